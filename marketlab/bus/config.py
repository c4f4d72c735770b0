"""Where the bus is, who we are to it and the limits of its stream, checked once (Lab, CLI and
readers share it); the one place that connects to it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from marketlab.settings import positive

log = logging.getLogger("marketlab.bus")

STREAM = "MARKETLAB"
SUBJECTS = "marketlab.>"
# The stream's own settings: what a client that makes the stream gives it when not told
STREAM_DEFAULTS: dict[str, float | int] = {
    "replicas": 1,
    "max_age": 24 * 3600.0,
    "max_bytes": 10 * 2**30,
    "duplicate_window": 120.0,
}
STREAM_SETTINGS = tuple(STREAM_DEFAULTS)
MAX_REPLICAS = 5  # JetStream keeps a stream on at most five nodes
_JS_FIELD = {
    "replicas": "num_replicas",
    "max_age": "max_age",
    "max_bytes": "max_bytes",
    "duplicate_window": "duplicate_window",
}

# Who a client is to the bus (one way at most) and how it checks the bus (TLS): the settings,
# each also an environment variable, a key of marketlab.toml's [bus] table and a --bus-* flag.
AUTH = ("token", "user", "password", "creds", "nkey")
TLS = ("ca", "cert", "key")
SECURITY = AUTH + TLS
SECRETS = ("token", "password")
ENV = {name: f"MARKETLAB_BUS_{name.upper()}" for name in SECURITY}
# settings that go together: the first source that sets any of a group sets the whole group
_GROUPS = (AUTH, ("ca",), ("cert", "key"))
_FILES = {
    "creds": "a .creds file",
    "nkey": "an NKey seed file",
    "ca": "a CA certificate file",
    "cert": "a client certificate file",
    "key": "the client certificate's key file",
}


def env_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The bus settings the environment gives (``MARKETLAB_BUS_TOKEN`` …), empty ones left out."""
    environ = os.environ if environ is None else environ
    return {name: environ[var] for name, var in ENV.items() if environ.get(var)}


def merge_settings(*sources: Mapping[str, Any]) -> dict[str, Any]:
    """Security settings from ``sources``, the first first: a source that sets any setting of a
    group (the way to authenticate; the CA; the client certificate and its key) sets that whole
    group, so a token given as a flag is never mixed with a user from the environment."""
    merged: dict[str, Any] = {}
    for group in _GROUPS:
        for source in sources:
            given = {k: source[k] for k in group if source.get(k) is not None}
            if given:
                merged.update(given)
                break
    return merged


class BusRefused(ConnectionError):
    """The bus refused this client: its credentials or its TLS. Not a network failure:
    trying again does not help."""


@dataclass(frozen=True, repr=False)
class BusConfig:
    """``url``: one or several comma-separated ``nats://host:port`` or ``tls://host:port``
    (a cluster's nodes).

    The stream keeps what collectors publish for ``max_age`` seconds and at most
    ``max_bytes``, on ``replicas`` nodes; a message sent twice within ``duplicate_window``
    seconds is stored once. These four are what the client that makes the stream gives it
    (one not given: ``STREAM_DEFAULTS``, 1 day, 10 GiB, 1 replica, 2 min). A client that finds
    the stream made uses it as it is: it never lowers its replicas or what it keeps; a setting
    given here that differs from the stream's is said in one log line, and only
    ``update_stream=True`` brings the stream to the settings given. A reader makes the stream
    only when given one of these settings (else it waits for a collector to make it).

    A collector holds at most ``buffer_limit`` records while the bus is away or failing (the
    oldest go first, counted) and seals a message every ``flush_interval`` s. A reader whose
    stream brings nothing new for ``stale_after`` seconds says it is stale (collectors publish
    at least a candle update every few seconds and a whole book every ``snapshot_interval``).

    Who this client is to the bus, one way at most: ``token``; ``user`` and ``password``;
    ``creds`` (a ``.creds`` file: a user JWT and its NKey seed); ``nkey`` (an NKey seed
    file). TLS: a ``tls://`` URL or any of ``ca`` (the CA file that signed the server's
    certificate; default: the system's), ``cert`` and ``key`` (a client certificate for
    mutual TLS). With TLS wanted, a server that does not start it is refused before anything
    (credentials included) is sent. Settings not given come from ``MARKETLAB_BUS_TOKEN``,
    ``_USER``, ``_PASSWORD``, ``_CREDS``, ``_NKEY``, ``_CA``, ``_CERT`` and ``_KEY``. The
    token and password never show in ``repr``, logs or status.
    """

    url: str
    stream: str = STREAM
    max_age: float | None = None
    max_bytes: int | None = None
    replicas: int | None = None
    duplicate_window: float | None = None
    update_stream: bool = False
    buffer_limit: int = 1_000_000
    flush_interval: float = 0.002
    snapshot_interval: float = 10.0  # a whole book at least this often, for readers joining late
    ack_timeout: float = 5.0
    stale_after: float = 30.0
    token: str | None = None
    user: str | None = None
    password: str | None = None
    creds: str | None = None
    nkey: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not all(
            u.strip().startswith(("nats://", "tls://")) for u in self.url.split(",")
        ):
            raise ValueError(
                f"bus url {_mask_url(self.url)!r}: expected nats://host:port or tls://host:port "
                "(comma-separated for a cluster)"
            )
        for name in ("flush_interval", "snapshot_interval", "ack_timeout", "stale_after"):
            positive(name, getattr(self, name))
        positive("buffer_limit", self.buffer_limit, integer=True)
        for name in STREAM_SETTINGS:
            if getattr(self, name) is not None:
                positive(name, getattr(self, name), integer=name in ("max_bytes", "replicas"))
        if self.replicas is not None and self.replicas > MAX_REPLICAS:
            raise ValueError(
                f"replicas must be at most {MAX_REPLICAS} (JetStream's limit), got {self.replicas}"
            )
        if not isinstance(self.update_stream, bool):
            raise ValueError(f"update_stream must be True or False, got {self.update_stream!r}")
        given = {name: getattr(self, name) for name in SECURITY}
        origin = {name: f"{name}=" for name, value in given.items() if value is not None}
        from_env = env_settings()
        if self._url_credentials():  # credentials in the URL: the environment adds none
            from_env = {k: v for k, v in from_env.items() if k not in AUTH}
        merged = merge_settings(given, from_env)
        for name in SECURITY:
            value = merged.get(name)
            if value is not None and name not in origin:
                origin[name] = ENV[name]
            if value is not None and name in _FILES:
                try:
                    value = os.fspath(value)
                except TypeError:
                    raise ValueError(
                        f"bus {name} ({origin[name]}) must be a path, got {value!r}"
                    ) from None
            object.__setattr__(self, name, value)
        self._check_security(origin)

    def _url_credentials(self) -> bool:
        return any(urlsplit(u.strip()).username is not None for u in self.url.split(","))

    def _check_security(self, origin: dict[str, str]) -> None:
        def named(*names: str) -> str:
            return " and ".join(f"{n} ({origin[n]})" for n in names)

        ways = [w for w in ("token", "user", "creds", "nkey") if getattr(self, w) is not None]
        if self.password is not None and self.user is None:
            raise ValueError(f"bus {named('password')} needs a user (user= / {ENV['user']})")
        if self.user is not None and self.password is None:
            raise ValueError(
                f"bus {named('user')} needs a password (password= / {ENV['password']})"
            )
        if len(ways) > 1:
            raise ValueError(
                f"bus {named(*ways)}: give one way to authenticate (a token, a user and "
                "password, a .creds file or an NKey seed)"
            )
        if ways and self._url_credentials():
            raise ValueError(
                f"bus url {self.display_url!r} carries credentials and {named(ways[0])} is "
                "given too: give one"
            )
        for name in ("token", "user", "password"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"bus {name} ({origin[name]}) must be non-empty text")
        if (self.cert is None) != (self.key is None):
            have, lack = ("cert", "key") if self.key is None else ("key", "cert")
            raise ValueError(
                f"bus {named(have)} needs its {lack} too ({lack}= / {ENV[lack]}): mutual TLS "
                "takes a client certificate and its private key"
            )
        for name, what in _FILES.items():
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ValueError(
                    f"bus {name} {path!r} ({origin[name]}): {what} that does not exist"
                )
        if (self.creds or self.nkey) and importlib.util.find_spec("nkeys") is None:
            way = "creds" if self.creds else "nkey"
            raise ValueError(
                f'bus {named(way)} needs the nkeys package: pip install nkeys (or "marketlab[bus]")'
            )
        if self.ca is not None or self.cert is not None:
            self.ssl_context()  # a file that is no certificate or key: said now, not at connect

    def given_stream_settings(self) -> dict[str, float | int]:
        """The stream settings this client was given (``replicas`` …), None ones left out."""
        return {k: v for k in STREAM_SETTINGS if (v := getattr(self, k)) is not None}

    # --- what connecting takes -------------------------------------------------------------

    @property
    def servers(self) -> list[str]:
        """The URL split at its commas: every node of a cluster, so a client can reach the bus
        while any one of them is up."""
        return [u.strip() for u in self.url.split(",")]

    @property
    def display_url(self) -> str:
        """The URL as shown in logs and status: credentials in it masked."""
        return _mask_url(self.url)

    @property
    def tls(self) -> bool:
        """TLS wanted: a ``tls://`` URL, a CA or a client certificate."""
        return (
            self.ca is not None
            or self.cert is not None
            or any(s.startswith("tls://") for s in self.servers)
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The server checked against ``ca`` (else the system's CAs), for its host name;
        ``cert``/``key`` shown when the server asks (mutual TLS)."""
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"bus ca {self.ca!r}: not a PEM CA certificate ({exc})") from None
        if self.cert is not None:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    f"bus cert {self.cert!r} and key {self.key!r}: not a PEM certificate and "
                    f"its private key ({exc})"
                ) from None
        return ctx

    def connect_options(self) -> dict[str, Any]:
        """The keyword arguments of ``nats.connect`` that say who this client is."""
        options: dict[str, Any] = {}
        if self.tls:
            options["tls"] = self.ssl_context()
        if self.token is not None:
            options["token"] = self.token
        if self.user is not None:
            options["user"], options["password"] = self.user, self.password
        if self.creds is not None:
            options["user_credentials"] = self.creds
        if self.nkey is not None:
            options["nkeys_seed"] = self.nkey
        return options

    def who(self) -> str:
        """How this client authenticates, in words (no secret in it)."""
        if self.token is not None:
            return "a token"
        if self.user is not None:
            return f"user {self.user!r}"
        if self.creds is not None:
            return f"the credentials in {self.creds}"
        if self.nkey is not None:
            return f"the NKey seed in {self.nkey}"
        return "credentials in the URL" if self._url_credentials() else "no credentials"

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in STREAM_SETTINGS and value is None:
                continue
            if f.name == "url":
                value = self.display_url
            elif f.name in SECURITY and value is None:
                continue
            elif f.name in SECRETS:
                shown.append(f"{f.name}='***'")
                continue
            shown.append(f"{f.name}={value!r}")
        return f"BusConfig({', '.join(shown)})"


def _mask_url(url: Any) -> str:
    """``url`` with every user and password shown as ``***`` (a password may hold a comma, so
    the list is not split first)."""
    if not isinstance(url, str):
        return repr(url)
    return _CREDENTIALS.sub("://***@", url)


_CREDENTIALS = re.compile(r"://[^/]*@")  # what stands between a scheme and its host's last @


def bus_config(bus: str | BusConfig, **options: Any) -> BusConfig:
    """``bus`` as a BusConfig; ``options`` (its fields) set on it."""
    if isinstance(bus, BusConfig):
        if not options:
            return bus
        current = {f.name: getattr(bus, f.name) for f in fields(bus)}
        if set(options) & set(AUTH):  # a way to authenticate replaces the one it had
            current.update(dict.fromkeys(AUTH))
        return BusConfig(**{**current, **options})
    return BusConfig(bus, **options)


# --- connecting ------------------------------------------------------------------------------


async def connect(config: BusConfig, name: str, on_state: Any = None) -> Any:
    """A NATS connection that reconnects forever; ``on_state(connected, error)`` hears of it.

    :class:`BusRefused`, at once, when the first connection is refused for its credentials
    (authorization) or its TLS (a certificate not trusted, TLS wanted and not offered): those
    do not mend by trying again. Once connected, such errors on a reconnect are only reported
    (a server being reconfigured)."""
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[str] = loop.create_future()
    connected = False

    async def disconnected() -> None:
        if on_state is not None:
            on_state(False, "disconnected")

    async def reconnected() -> None:
        if on_state is not None:
            on_state(True, "")

    async def error(exc: Exception) -> None:
        why = refusal(exc, config)
        if why and not connected and not refused.done():
            refused.set_result(why)
        if on_state is not None:
            on_state(None, why or f"{type(exc).__name__}: {exc}")

    nc = _client_class()(want_tls=config.tls)
    attempt = asyncio.ensure_future(
        nc.connect(
            servers=config.servers,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            **config.connect_options(),
        )
    )
    try:
        await asyncio.wait((attempt, refused), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not attempt.done():  # refused, or this task cancelled: the attempt goes too
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            await close_quietly(nc)
    if not attempt.cancelled() and attempt.exception() is None:
        connected = True
        refused.cancel()
        return nc
    if refused.done() and not refused.cancelled():
        raise BusRefused(f"bus {config.display_url}: refused: {refused.result()}")
    await close_quietly(nc)
    return attempt.result()  # raises what the attempt raised


def refusal(exc: BaseException, config: BusConfig) -> str:
    """Why the bus refused this client, when ``exc`` says it did ("" for anything else)."""
    text = str(exc)
    if "authorization violation" in text.lower() or type(exc).__name__ == "AuthorizationError":
        if config.who() == "no credentials":
            hint = (
                "this client gave none: give a token, a user and password, a .creds file or "
                "an NKey seed (BusConfig, --bus-* flags, [bus] in marketlab.toml or "
                "MARKETLAB_BUS_*)"
            )
        else:
            hint = f"the server does not accept {config.who()}"
        return f"authorization violation: {hint}"
    if "authentication" in text.lower() and (
        "expired" in text.lower() or "revoked" in text.lower()
    ):
        return f"authorization: {text}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        signer = f"the CA given ({config.ca})" if config.ca else "the system's CAs"
        return (
            f"TLS: the server's certificate is not trusted ({exc.verify_message}): it is "
            f"checked against {signer}; give the CA that signed it (ca= / --bus-ca / "
            "MARKETLAB_BUS_CA)"
        )
    if isinstance(exc, _TlsNotOffered):
        return str(exc)
    if isinstance(exc, ssl.SSLError) and "alert" in text.lower():
        return (
            f"TLS: the server refused the handshake ({exc.reason or text}); it may want a "
            "client certificate (cert= and key=)"
        )
    return ""


class _TlsNotOffered(Exception):
    pass


_CLIENT: Any = None


def _client_class() -> Any:
    """nats-py's client, refusing (before CONNECT, which carries the credentials) a server
    that does not start TLS when TLS is wanted: nats-py alone goes on in the clear then."""
    global _CLIENT
    if _CLIENT is not None:
        return _CLIENT
    from nats.aio.client import Client
    from nats.errors import Error

    class TlsNotOffered(_TlsNotOffered, Error):  # an Error: nats-py's connect loop reports it
        pass

    class BusClient(Client):
        def __init__(self, want_tls: bool) -> None:
            super().__init__()
            self._want_tls = want_tls

        def _connect_command(self) -> bytes:
            info = getattr(self, "_server_info", None) or {}
            if (
                self._want_tls
                and not info.get("tls_required")
                and not self.options.get("tls_handshake_first")
            ):
                raise TlsNotOffered(
                    "TLS wanted (a tls:// URL, a CA or a client certificate) and the server "
                    "does not offer it: nothing sent, credentials included"
                )
            return super()._connect_command()

    if not hasattr(Client, "_connect_command"):
        log.warning("bus: this nats-py cannot be kept from going on without TLS when TLS is wanted")
    _CLIENT = BusClient
    return _CLIENT


async def ensure_stream(js: Any, config: BusConfig, *, create: bool = True) -> dict[str, Any]:
    """The stream, as this client found or made it: its replicas, max_age, max_bytes and
    duplicate_window (an empty dict: there is none and ``create`` is False).

    No stream yet: made with the settings given, ``STREAM_DEFAULTS`` for the others (a client
    that finds it made by another meanwhile takes that one). A stream already there is used as
    it is, never weakened: a given setting that differs from the stream's is said in one
    warning, and changes the stream only with ``config.update_stream``."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    given = config.given_stream_settings()
    info = None
    for _ in range(3):
        try:
            info = await js.stream_info(config.stream)
            break
        except NotFoundError:
            if not create:
                return {}
        settings: dict[str, Any] = {**STREAM_DEFAULTS, **given}
        wanted = StreamConfig(
            name=config.stream,
            subjects=[SUBJECTS],
            storage=StorageType.FILE,
            **{_JS_FIELD[k]: v for k, v in settings.items()},
        )
        try:
            await js.add_stream(wanted)
        except BadRequestError as exc:
            if exc.err_code == _STREAM_NAME_IN_USE:  # another client made it meanwhile
                continue
            raise
        log.info("bus %s: made stream %s: %s", config.display_url, config.stream, _said(settings))
        return dict(settings)
    if info is None:
        raise RuntimeError(f"stream {config.stream}: neither found nor made")
    have = info.config
    found = {k: getattr(have, _JS_FIELD[k]) for k in STREAM_SETTINGS}
    found["max_age"] = float(found["max_age"] or 0.0)
    found["duplicate_window"] = float(found["duplicate_window"] or 0.0)
    differs = {k: v for k, v in given.items() if not _same(found[k], v)}
    subjects = list(have.subjects or [])
    foreign = SUBJECTS not in subjects
    if not differs and not foreign:
        return found
    what = ", ".join(
        f"{k} {_shown(k, found[k])} (given: {_shown(k, v)})" for k, v in differs.items()
    )
    if foreign:
        what += ("; " if what else "") + f"subjects {subjects} (not {SUBJECTS})"
    if not config.update_stream:
        said = (
            f"bus {config.display_url}: stream {config.stream} has {what}: used as it is "
            "(update_stream=True / --bus-update-stream changes it)"
        )
        if said not in _SAID:  # once a process (a Lab of several venues has several clients)
            _SAID.add(said)
            log.warning("%s", said)
        return found
    changes: dict[str, Any] = {_JS_FIELD[k]: v for k, v in differs.items()}
    if foreign:
        changes["subjects"] = [*subjects, SUBJECTS]
    await js.update_stream(dataclasses.replace(have, **changes))
    log.warning("bus %s: stream %s changed as asked: %s", config.display_url, config.stream, what)
    return {**found, **differs}


_STREAM_NAME_IN_USE = 10058  # JetStream's error code: a stream of that name, other settings
_SAID: set[str] = set()  # differences between a stream and the settings given, said already


def _same(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) < 1e-6


def _shown(name: str, value: float) -> str:
    """A stream setting as an operator reads it (JetStream's 0 age and -1 bytes: unlimited)."""
    if name == "max_bytes":
        return "unlimited" if value < 0 else f"{value:,.0f} bytes"
    if name in ("max_age", "duplicate_window"):
        return "unlimited" if value <= 0 else f"{value:g} s"
    return f"{value:g}"


def _said(settings: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {_shown(k, v)}" for k, v in settings.items())


async def close_quietly(nc: Any) -> None:
    """Close a connection that may already be gone."""
    if nc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2.0)
