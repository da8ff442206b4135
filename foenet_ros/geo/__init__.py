"""geo/: CRS + local metric frame, map rasters, camera geometry, rendering, tiling.

Public API (see docs/ARCHITECTURE.md and docs/geo.md)::

    from foenet_ros.geo import (GeoFrame, MapRaster, read_map, CameraIntrinsics, CameraPose,
        ground_to_image_homography, image_to_ground, footprint, pose_from_homography,
        render_view, TileSet, make_tiles, tile_scales_for_camera, synthetic_map)
"""

from .camera import (
    CameraIntrinsics,
    CameraPose,
    distort_uv,
    footprint,
    ground_to_image_homography,
    image_center_ground,
    image_to_ground,
    pose_from_homography,
    pose_from_opk,
    project_points,
)
from .crs import WGS84, GeoFrame, utm_epsg_for_lonlat
from .raster import LatLonBounds, MapRaster, MapSource, crop_matrix, open_map, read_bounds_sidecar, read_map, read_world_file
from .render import render_view, view_gsd_m
from .synthetic import synthetic_map
from .tiles import TileSet, make_tiles, tile_scales_for_camera

__all__ = [
    "GeoFrame",
    "WGS84",
    "utm_epsg_for_lonlat",
    "CameraIntrinsics",
    "CameraPose",
    "ground_to_image_homography",
    "image_to_ground",
    "image_center_ground",
    "footprint",
    "pose_from_homography",
    "pose_from_opk",
    "project_points",
    "distort_uv",
    "MapRaster",
    "read_map",
    "open_map",
    "MapSource",
    "read_bounds_sidecar",
    "read_world_file",
    "LatLonBounds",
    "crop_matrix",
    "synthetic_map",
    "render_view",
    "view_gsd_m",
    "TileSet",
    "make_tiles",
    "tile_scales_for_camera",
]
