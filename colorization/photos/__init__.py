"""Photos in and out: where they come from (folders, .zip, .tar), how they decode (orientation, colour
management, 8-bit sRGB) and their CIELab form (conversions, storage quantisation, colour statistics)."""
