"""What a run is configured with: the versioned schema registry (schemas,
archive map, mappings, pipeline rules), the input profiles, archive limits,
and the :class:`RunConfig` that the edges build once.

Imports only :mod:`bridge_downstream.common`.
"""

from bridge_downstream.config.limits import DEFAULT_LIMITS, ArchiveLimits
from bridge_downstream.config.profiles import (
    DedupRule,
    Profile,
    ProfileError,
    builtin_profiles,
    load_profile,
)
from bridge_downstream.config.registry import (
    PipelineRules,
    RegistryError,
    RegistrySources,
    SchemaRegistry,
    build_registry,
)
from bridge_downstream.config.run_config import DEFAULT_ENGINE, DEFAULT_RETENTION, RunConfig

__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_LIMITS",
    "DEFAULT_RETENTION",
    "ArchiveLimits",
    "DedupRule",
    "PipelineRules",
    "Profile",
    "ProfileError",
    "RegistryError",
    "RegistrySources",
    "RunConfig",
    "SchemaRegistry",
    "build_registry",
    "builtin_profiles",
    "load_profile",
]
