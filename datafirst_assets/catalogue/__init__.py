"""Data catalogues of released datasets, generated from the release specs and the data."""

from datafirst_assets.catalogue.build import Catalogue, CatalogueError, build_catalogue, build_catalogues

__all__ = ["Catalogue", "CatalogueError", "build_catalogue", "build_catalogues"]
