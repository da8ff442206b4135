"""Exception hierarchy: every error a user can cause has its own type and an actionable message."""

from __future__ import annotations


class FoenetError(Exception):
    """Base class of all foenet_ros errors (catch this in entry points)."""


class ConfigError(FoenetError, ValueError):
    """An invalid configuration value (preset, override, parameter)."""


class CheckpointError(FoenetError):
    """A checkpoint is missing, truncated, corrupt or does not match the model."""


class ModelError(FoenetError):
    """A model cannot be built (unknown backbone, missing offline weights...)."""


class RasterError(FoenetError):
    """A map raster is unreadable, not georeferenced, or has no valid pixels."""


class CRSMismatchError(FoenetError):
    """Two georeferenced inputs use incompatible coordinate reference systems."""


class CameraError(FoenetError, ValueError):
    """Invalid camera intrinsics or pose (NaN, negative focal length, horizon in view...)."""


class ImageError(FoenetError, ValueError):
    """An image of the wrong shape, dtype or encoding, or an undecodable buffer."""


class IndexError_(FoenetError):
    """Base for tile index problems (named with a trailing underscore to not shadow the builtin)."""


class IndexMismatchError(IndexError_):
    """The index was built with another model, input size or CRS than the one in use."""


class IndexCorruptError(IndexError_):
    """An index directory is incomplete, truncated or of an unknown format version."""


class EmptyIndexError(IndexError_):
    """An index (or a radius-gated search) contains no tiles."""


class DatasetError(FoenetError):
    """A dataset folder has an unknown layout, missing views or unreadable images."""


class BagError(FoenetError):
    """A rosbag is unreadable, truncated, or lacks the topics a command needs."""


# ---- input validation (foenet_ros.geo.validate): one type per kind of bad input --------------
class InputError(FoenetError, ValueError):
    """An input value outside its physical range (a prior, a heading...)."""


class PriorError(InputError):
    """An invalid position prior: latitude/longitude out of range or not finite, sigma <= 0 or absurd."""


class HeadingError(InputError):
    """A heading that is not a finite angle."""


class IntrinsicsError(CameraError):
    """Camera intrinsics outside the physically possible range (focal length, principal point)."""


class DistortionError(CameraError):
    """Lens distortion coefficients that no real lens has (absurd size, a fold-over inside the image)."""


class AttitudeError(CameraError):
    """A camera roll/pitch that is not finite or outside the supported tilt range."""


class AltitudeError(CameraError):
    """A height above ground that is not finite, not positive, or beyond any drone's reach."""


class ImageTooLargeError(ImageError):
    """An image whose header announces more pixels than the configured budget (checked before decoding)."""
