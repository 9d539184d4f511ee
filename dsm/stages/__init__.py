"""The six stages of the chain, one module each; no stage imports another.

==========  =============================================================  ==============
module      does                                                           command
==========  =============================================================  ==============
ingest      the configured inputs read onto the 1 km grid, into the cube   ``dsm ingest``
train       the models (fusion: pooled + companions; rao2022: per period)  ``dsm train``
predict     the daily 1 km maps, their uncertainty and origin              ``dsm predict``
export      COGs + STAC and/or CF netCDF from the products store           ``dsm export``
validate    in situ (and, on the twin, 1 km truth) validation              ``dsm validate``
report      the HTML report from a validation                              ``dsm report``
==========  =============================================================  ==============

What two stages share lives below them (:mod:`dsm.store`, :mod:`dsm.blocks`, :mod:`dsm.skill`
...); only :mod:`dsm.cli`, :mod:`dsm.chain` and :mod:`dsm.testing` sit above and import them.
"""
