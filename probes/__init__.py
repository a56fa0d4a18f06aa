"""Probes exercise a running container; the same probes later prove the slimmed image behaves the same."""
from .base import LOOPBACK, Probe, Target
from .exec import ExecProbe
from .host import HostExecProbe
from .http import HttpProbe, HttpRequest
from .probefile import ProbeFile, load_probe_file

__all__ = [
    "LOOPBACK",
    "ExecProbe",
    "HostExecProbe",
    "HttpProbe",
    "HttpRequest",
    "Probe",
    "ProbeFile",
    "Target",
    "load_probe_file",
]
