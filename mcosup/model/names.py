"""Every wire name of the product contract (``shared/spec/CONTRACT.md`` section 1), in one place.

Pure constants. Both ``webhooks`` and ``mcosup`` import these, so a name is spelt exactly once.
"""

from typing import Final

GROUP: Final = "machineconfiguration.openshift.io"
VERSION: Final = "v1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
PREFIX: Final = f"{GROUP}/"

DEFAULT_NAMESPACE: Final = "openshift-machine-config-operator"

# Pool opt-in (label presence; value ignored).
LAYERING_ENABLED: Final = PREFIX + "layering-enabled"

# MachineOSConfig (contract section 11): the MCO's GA opt-in, one per pool, named like it.
MACHINEOSCONFIG_KIND: Final = "MachineOSConfig"
#: Label (``true``) on a MachineOSConfig the supervisor made from a pool's layering-enabled label.
MANAGED_BY_LABEL: Final = PREFIX + "managed-by-label"
MANAGED_BY_LABEL_VALUE: Final = "true"
#: ``spec.imageBuilder.imageBuilderType``: the only builder the MCO's GA API has.
JOB_IMAGE_BUILDER: Final = "Job"
#: ``spec.containerFile[].containerfileArch`` of the text for every architecture.
NO_ARCH: Final = "NoArch"
# Pruning (contract section 11): how many Succeeded builds a MachineOSConfig keeps, and how an image
# goes from the registry before its MachineOSBuild goes from the API.
#: Annotation on a MachineOSConfig, integer >= 1: the Succeeded MachineOSBuilds kept.
BUILD_HISTORY_LIMIT: Final = PREFIX + "build-history-limit"
DEFAULT_BUILD_HISTORY_LIMIT: Final = 3
#: Finalizer on every MachineOSBuild the builder creates: removed once its image is deleted from the
#: registry, was already gone, the registry refused, or there is no image to delete.
PRUNE_IMAGE_FINALIZER: Final = PREFIX + "prune-image"
#: Annotation on a MachineOSBuild: the push Secret its image was pushed with, so that its image can be
#: deleted from the registry after its MachineOSConfig (which names the Secret) is gone.
PUSH_SECRET_ANNOTATION: Final = PREFIX + "push-secret"
#: MachineOSConfig condition: False (reason ``RegistryRefusedDelete``) while the registry refuses to
#: delete a pruned build's image; True again once a delete succeeds.
IMAGES_PRUNED: Final = "ImagesPruned"

# MachineOSBuild (contract section 11): the record of one build, named <MachineOSConfig>-<16 hex>.
MACHINEOSBUILD_KIND: Final = "MachineOSBuild"
#: Annotation on a MachineOSConfig: its current MachineOSBuild (also ``status.machineOSBuild``).
CURRENT_MOSB_ANNOTATION: Final = PREFIX + "current-machine-os-build"
# MachineOSBuild condition types, in the MCO's order; exactly one is True once the build is under way.
MOSB_PREPARED: Final = "Prepared"
MOSB_BUILDING: Final = "Building"
MOSB_FAILED: Final = "Failed"
MOSB_INTERRUPTED: Final = "Interrupted"
MOSB_SUCCEEDED: Final = "Succeeded"
MOSB_CONDITIONS: Final = (MOSB_PREPARED, MOSB_BUILDING, MOSB_FAILED, MOSB_INTERRUPTED, MOSB_SUCCEEDED)
#: Once one of these is True the conditions never change again (the CRD's CEL rules hold them).
MOSB_FINAL: Final = (MOSB_FAILED, MOSB_INTERRUPTED, MOSB_SUCCEEDED)
#: Annotation (presence) on a MachineOSConfig: build its current config again; removed once the new
#: MachineOSBuild exists.
REBUILD_ANNOTATION: Final = PREFIX + "rebuild"
#: Annotation on a MachineOSConfig: the build Job's activeDeadlineSeconds, as a Go duration (``45m``).
BUILD_TIMEOUT_ANNOTATION: Final = PREFIX + "build-timeout"

# ConfigMaps in the namespace.
BUILD_CONFIG_CM: Final = "on-cluster-build-config"
CUSTOM_DOCKERFILE_CM: Final = "on-cluster-build-custom-dockerfile"
OSIMAGEURL_CM: Final = "machine-config-osimageurl"
NODE_CERTIFICATES_CM: Final = "node-certificates"
#: Contract 12.2: what a change needs instead of a reboot, in the MCO's nodeDisruptionPolicy shape.
NODE_DISRUPTION_POLICY_CM: Final = "node-disruption-policy"
NODE_DISRUPTION_POLICY_KEY: Final = "policy.yaml"

# Keys of on-cluster-build-config.
BASE_IMAGE_PULL_SECRET_KEY: Final = "baseImagePullSecretName"
FINAL_IMAGE_PUSH_SECRET_KEY: Final = "finalImagePushSecretName"
FINAL_IMAGE_PULLSPEC_KEY: Final = "finalImagePullspec"
IMAGE_BUILDER_TYPE_KEY: Final = "imageBuilderType"
REQUIRED_BUILD_CONFIG_KEYS: Final = (
    BASE_IMAGE_PULL_SECRET_KEY,
    FINAL_IMAGE_PUSH_SECRET_KEY,
    FINAL_IMAGE_PULLSPEC_KEY,
)
CUSTOM_POD_BUILDER: Final = "custom-pod-builder"
IMAGE_BUILDER_TYPES: Final = (CUSTOM_POD_BUILDER,)

# Key of machine-config-osimageurl.
BASE_OS_CONTAINER_IMAGE_KEY: Final = "baseOSContainerImage"

# ServiceAccounts (system:serviceaccount:<namespace>:<name>).
SUPERVISOR_SA: Final = "machine-config-supervisor"
BUILDER_SA: Final = "machine-os-builder"
DAEMON_SA: Final = "machine-config-daemon"

# MachineConfig role label and rendered names.
ROLE_LABEL: Final = PREFIX + "role"
RENDERED_PREFIX: Final = "rendered-"

# Annotations on pools and nodes.
NEWEST_IMAGE_ANNOTATION: Final = PREFIX + "newestImageEquivalentConfig"
DESIRED_CONFIG: Final = PREFIX + "desiredConfig"
CURRENT_CONFIG: Final = PREFIX + "currentConfig"
DESIRED_IMAGE: Final = PREFIX + "desiredImage"
CURRENT_IMAGE: Final = PREFIX + "currentImage"
DAEMON_MODE: Final = PREFIX + "daemon-mode"
STATE: Final = PREFIX + "state"
REASON: Final = PREFIX + "reason"
CORDONED_BY: Final = PREFIX + "cordoned-by"
CORDONED_BY_VALUE: Final = "mcosup"
#: Contract 12.1: the supervisor asks a node to download an image ahead of its turn; the daemon says
#: it has (the image is downloaded, ready to boot).
STAGING_IMAGE: Final = PREFIX + "stagingImage"
STAGED_IMAGE: Final = PREFIX + "stagedImage"
#: Daemon's report of its last change applied without a reboot: ``<rendered>: <actions>``.
LAST_APPLIED_WITHOUT_REBOOT: Final = PREFIX + "lastAppliedWithoutReboot"

MODE_LEGACY: Final = "legacy"
MODE_LAYERED: Final = "layered"

STATE_DONE: Final = "Done"
STATE_WORKING: Final = "Working"
STATE_REBOOTING: Final = "Rebooting"
STATE_DEGRADED: Final = "Degraded"

# The builder pod.
BUILDER_POD: Final = "machine-os-builder"
BUILDER_APP_LABEL: Final = "k8s-app"
BUILDER_APP_VALUE: Final = "machine-os-builder"

# Ephemeral build objects.
BUILD_OBJECT_LABEL: Final = PREFIX + "build-object"
TARGET_POOL_LABEL: Final = PREFIX + "target-pool"
RENDERED_CONFIG_LABEL: Final = PREFIX + "rendered-config"
POOL_LABEL: Final = PREFIX + "pool"  # image label naming the pool

# Pool conditions.
BUILD_PENDING: Final = "BuildPending"
BUILDING: Final = "Building"
BUILD_SUCCESS: Final = "BuildSuccess"
BUILD_FAILED: Final = "BuildFailed"
#: The current build's Job was deleted mid-build; it starts again as a new MachineOSBuild.
BUILD_INTERRUPTED: Final = "BuildInterrupted"
BUILD_CONDITIONS: Final = (BUILD_PENDING, BUILDING, BUILD_SUCCESS, BUILD_FAILED, BUILD_INTERRUPTED)
LAYERING_READY: Final = "LayeringReady"
UPDATED: Final = "Updated"
UPDATING: Final = "Updating"
DEGRADED: Final = "Degraded"
NODE_DEGRADED: Final = "NodeDegraded"
RENDER_DEGRADED: Final = "RenderDegraded"

# Reasons of LayeringReady=False.
REASON_INVALID_CONFIG: Final = "InvalidConfig"
REASON_BUILDER_STARTING: Final = "BuilderStarting"
REASON_BUILDER_CRASHLOOPING: Final = "BuilderCrashLooping"
REASON_DRAIN_STUCK: Final = "DrainStuck"

# Safer rollouts (contract 12.3, 12.4): annotations on pools and the pool conditions' reasons.
MAINTENANCE_WINDOW: Final = PREFIX + "maintenance-window"
HEALTH_CHECK_SECONDS: Final = PREFIX + "health-check-seconds"
RESUME_ROLLOUT: Final = PREFIX + "resume-rollout"
REASON_OUTSIDE_MAINTENANCE_WINDOW: Final = "OutsideMaintenanceWindow"
REASON_INVALID_MAINTENANCE_WINDOW: Final = "InvalidMaintenanceWindow"
REASON_ROLLOUT_HALTED: Final = "RolloutHalted"

# Paths an OS image cannot deliver: the image owns /usr and /etc, not state or per-host directories.
IMAGE_UNDELIVERABLE_PREFIXES: Final = ("/var", "/home", "/root", "/run", "/tmp", "/usr/local")

# Request user extra carrying the node a daemon's credential belongs to.
NODE_NAME_EXTRA: Final = "authentication.kubernetes.io/node-name"


def service_account_user(namespace: str, name: str) -> str:
    """The username the API server gives a ServiceAccount's token."""
    return f"system:serviceaccount:{namespace}:{name}"


def image_undeliverable(path: str) -> str | None:
    """The prefix of ``path`` an image cannot deliver, or None when an image can carry it."""
    for prefix in IMAGE_UNDELIVERABLE_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return None


def label_value(value: str) -> str:
    """``value`` made a valid label value: at most 63 characters, ending alphanumeric.

    Build objects carry their pool and rendered config as labels; ``rendered-<pool>-<32 hex>`` outgrows
    a label once the pool's name passes 21 characters. Names keep the whole value; the label only has to
    stay recognisable, and every reader compares through this same function.
    """
    return value[:63].rstrip("-_.")
