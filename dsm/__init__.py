"""dsm: daily 1 km soil moisture by downscaling SMAP with MODIS, terrain and soil predictors."""
