"""How the catalog names OPC-UA nodes, monitors them and secures the session (plain data).

A tag names its node in one of two ways:

- ``node``: a node id in OPC UA's text form, ``ns=2;i=1234``, ``ns=3;s="DB1"."Temp"``,
  ``ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a`` or ``ns=1;b=M/RbKBsRVkePCePcx24oRA==``.
  ``nsu=URI;…`` names the namespace by URI (or by an alias from the source's
  ``namespaces``), resolved to its index at connect time; this survives a server that
  renumbers its namespaces. No ``ns``/``nsu`` means namespace 0, as the standard says.
- ``browse_path``: browse names from the Objects folder, separated by ``/``, e.g.
  ``Plant/Press 1/Pressure``. A name may carry a namespace, ``2:Pressure`` (index) or
  ``di:Pressure`` (alias); without one it is in the source's ``namespace``, else in 0.

Nothing here talks to a server: the connector and the executor resolve these at connect
time (:mod:`schemas.opcua_nodes`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Deadband",
    "MonitoringSpec",
    "NodeRef",
    "OpcUaSecurity",
    "parse_browse_path",
    "parse_node_ref",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_NODE = re.compile(r"^(?:(?P<kind>ns|nsu)=(?P<ns>[^;]+);)?(?P<id_type>[isgb])=(?P<ident>.+)$",
                   re.DOTALL)


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A parsed node id: ``namespace`` is an index (int) or a URI/alias (str) to resolve."""

    namespace: int | str
    id_type: Literal["i", "s", "g", "b"]
    identifier: str

    def with_index(self, index: int) -> str:
        """The node id in ``ns=<index>;…`` form, once the namespace is resolved."""
        return f"ns={index};{self.id_type}={self.identifier}"


def parse_node_ref(text: str) -> NodeRef:
    """``ns=2;i=5``, ``nsu=urn:x;s=Temp`` or ``i=85`` -> NodeRef; ValueError names the fix."""
    m = _NODE.match(text.strip())
    if m is None:
        raise ValueError(
            f"node {text!r} is not an OPC UA node id; write it like ns=2;i=1234, "
            "ns=3;s=\"DB1\".\"Temp\", nsu=urn:your:namespace;s=Temperature, or use browse_path")
    id_type = m.group("id_type")
    ident = m.group("ident")
    if id_type == "i" and not ident.isdigit():
        raise ValueError(f"node {text!r}: a numeric id (i=) must be digits, got {ident!r}")
    ns: int | str = 0
    if m.group("kind") == "ns":
        if not m.group("ns").isdigit():
            raise ValueError(
                f"node {text!r}: ns= takes a namespace index; for a URI or alias write nsu=")
        ns = int(m.group("ns"))
    elif m.group("kind") == "nsu":
        ns = m.group("ns")
    return NodeRef(ns, id_type, ident)  # type: ignore[arg-type]


def parse_browse_path(text: str) -> list[tuple[int | str | None, str]]:
    """``Plant/2:Line 1/di:Temp`` -> [(None, 'Plant'), (2, 'Line 1'), ('di', 'Temp')].

    ``None`` means: the source's default namespace. ValueError on an empty path or segment.
    """
    parts = [p.strip() for p in text.strip().strip("/").split("/")]
    if not parts or any(not p for p in parts):
        raise ValueError(
            f"browse_path {text!r} has an empty segment; write names from the Objects "
            "folder separated by '/', e.g. Plant/Press 1/Pressure")
    out: list[tuple[int | str | None, str]] = []
    for part in parts:
        prefix, sep, name = part.partition(":")
        if sep and prefix and name and " " not in prefix:
            out.append((int(prefix) if prefix.isdigit() else prefix, name))
        else:
            out.append((None, part))
    return out


class Deadband(_Frozen):
    """A data-change filter: report a change only when it exceeds ``value`` (in the
    tag's units for ``absolute``, in % of its EURange for ``percent``)."""

    kind: Literal["absolute", "percent"]
    value: float = Field(ge=0)


class MonitoringSpec(_Frozen):
    """Monitored-item settings; a tag's entries override its source's, field by field."""

    sampling_ms: float | None = Field(default=None, ge=0)  # 0: the server's fastest
    publishing_ms: float | None = Field(default=None, ge=1)
    queue_size: int | None = Field(default=None, ge=1)
    deadband: Deadband | None = None

    def merged(self, override: MonitoringSpec | None) -> MonitoringSpec:
        if override is None:
            return self
        # field values as they are: model_dump() would turn a Deadband into a plain dict
        return self.model_copy(update={k: v for k, v in override if v is not None})


SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]


class OpcUaSecurity(_Frozen):
    """How a source authenticates the server and itself.

    The client certificate is generated on first use under the data directory unless
    ``certificate``/``private_key`` name one. The server's certificate must be pinned
    (``millstream trust opcua URL``) or placed in the trusted folder. Secrets come only
    from the environment (``*_env``: the variable's name) or files, never the catalog.
    """

    policy: SecurityPolicy = "None"
    mode: SecurityMode = "None"
    certificate: Path | None = None  # client application certificate (DER or PEM)
    private_key: Path | None = None
    username: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    user_certificate: Path | None = None  # X.509 user authentication
    user_private_key: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(
                f"security policy {self.policy!r} with mode {self.mode!r}: a policy other than "
                "None needs mode Sign or SignAndEncrypt, and policy None needs mode None")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("give both certificate and private_key, or neither")
        if (self.user_certificate is None) != (self.user_private_key is None):
            raise ValueError("give both user_certificate and user_private_key, or neither")
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        has_user = bool(self.username or self.username_env)
        if has_user != bool(self.password_env or self.password_file):
            raise ValueError(
                "username authentication needs a username (username or username_env) and a "
                "password (password_env or password_file)")
        if has_user and self.user_certificate is not None:
            raise ValueError("choose username/password or a user certificate, not both")
        return self
