"""Small helpers shared by several areas of the package."""
