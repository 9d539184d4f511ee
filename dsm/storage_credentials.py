"""Credentials in a configuration's fsspec ``storage_options``, and the configuration without them.

Which options are credentials (:func:`is_credential`), where a configuration carries them
(:func:`inline_credentials`), the ``AWS_*`` environment that replaces them
(:func:`credential_env`) and the configuration as YAML without them (:func:`config_yaml`): the
deploy manifests carry credentials only by reference, through Kubernetes Secrets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from dsm.config import Config
from dsm.errors import ConfigError

CREDENTIAL_WORDS = ("key", "secret", "token", "passw", "credential", "auth", "connection_string", "private",
                    "cookie")
"""An fsspec option whose name contains one of these (any case) is a credential (:func:`is_credential`)."""
AWS_ENV: dict[tuple[str, ...], str] = {
    ("key",): "AWS_ACCESS_KEY_ID",
    ("secret",): "AWS_SECRET_ACCESS_KEY",
    ("token",): "AWS_SESSION_TOKEN",
    ("client_kwargs", "aws_access_key_id"): "AWS_ACCESS_KEY_ID",
    ("client_kwargs", "aws_secret_access_key"): "AWS_SECRET_ACCESS_KEY",
    ("client_kwargs", "aws_session_token"): "AWS_SESSION_TOKEN",
}
"""s3fs credential options and the environment variables botocore reads in their place."""


def is_credential(name: str, value: Any) -> bool:
    """Whether the fsspec option ``name: value`` is a credential (see :data:`CREDENTIAL_WORDS`).

    None and booleans (``anon: true``, ``use_ssl: false``) never are.
    """
    if value is None or isinstance(value, bool):
        return False
    return any(word in name.lower() for word in CREDENTIAL_WORDS)


def split_storage_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """fsspec options split into (non-secret, credentials); nested maps (``client_kwargs``) alike.

    Parameters
    ----------
    options
        ``storage_options`` of the configuration.

    Returns
    -------
    tuple of dict
        What may be written into a manifest (``endpoint_url``, ``anon`` ...) and the
        credentials (``key``, ``secret``, ``token``, ``client_kwargs.aws_secret_access_key`` ...).
    """
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for name, value in options.items():
        if is_credential(name, value):
            secret[name] = value
        elif isinstance(value, Mapping):
            pub, sec = split_storage_options(value)
            if pub or not sec:  # a map emptied only by taking credentials out is dropped
                public[name] = pub
            if sec:
                secret[name] = sec
        else:
            public[name] = value
    return public, secret


def _split_config(raw: Any, where: str = "") -> tuple[Any, dict[str, dict[str, Any]]]:
    """A dumped configuration without credentials, and the credentials of each ``storage_options``."""
    if isinstance(raw, list):
        parts = [_split_config(v, f"{where}[{i}]") for i, v in enumerate(raw)]
        return [p for p, _ in parts], {k: v for _, found in parts for k, v in found.items()}
    if not isinstance(raw, dict):
        return raw, {}
    out: dict[str, Any] = {}
    found: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        at = f"{where}.{key}" if where else key
        if key == "storage_options" and isinstance(value, dict):
            out[key], secret = split_storage_options(value)
            if secret:
                found[at] = secret
        else:
            out[key], sub = _split_config(value, at)
            found.update(sub)
    return out, found


def _leaves(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def inline_credentials(config: Config) -> list[str]:
    """Where ``config`` carries credentials inline: ``["stores.storage_options.secret", ...]``."""
    _, found = _split_config(config.model_dump(mode="json", exclude_unset=True))
    return [".".join((where, *path)) for where, secret in found.items() for path, _ in _leaves(secret)]


def credential_env(config: Config) -> dict[str, str]:
    """The ``AWS_*`` environment that replaces the credentials ``config`` carries inline.

    Parameters
    ----------
    config
        A configuration with s3fs credentials (``key``, ``secret``, ``token``, or the same as
        ``client_kwargs.aws_*``) in some ``storage_options``.

    Returns
    -------
    dict
        ``{"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ..., "AWS_SESSION_TOKEN": ...}``
        (those given).

    Raises
    ------
    ConfigError
        When there are no inline credentials, when one has no ``AWS_*`` variable, or when two
        ``storage_options`` give one variable different values (pods have one environment).
    """
    _, found = _split_config(config.model_dump(mode="json", exclude_unset=True))
    if not found:
        raise ConfigError("the configuration has no credentials in its storage_options: create the Secret with "
                          "kubectl create secret generic NAME --from-literal=AWS_ACCESS_KEY_ID=... "
                          "--from-literal=AWS_SECRET_ACCESS_KEY=...")
    env: dict[str, str] = {}
    for where, secret in found.items():
        for path, value in _leaves(secret):
            name = AWS_ENV.get(path)
            option = ".".join((where, *path))
            if name is None:
                raise ConfigError(f"{option}: no environment variable of s3fs/botocore carries it; leave it out and "
                                  "put what your filesystem reads into the Secret yourself (kubectl create secret "
                                  "generic NAME --from-literal=VARIABLE=...)")
            if env.setdefault(name, str(value)) != str(value):
                raise ConfigError(f"{option}: differs from another storage_options' value of {name}; pods have "
                                  "one environment, so every store and input must use the same credentials")
    return env


def config_yaml(config: Config) -> str:
    """The settings given in ``config`` (defaults left out) as YAML that :func:`dsm.config.load` reads.

    Credential-like ``storage_options`` (:func:`split_storage_options`) are left out, everywhere.
    """
    public, _ = _split_config(config.model_dump(mode="json", exclude_unset=True))
    return yaml.safe_dump(public, sort_keys=False)
