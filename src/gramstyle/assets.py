"""Files that ship inside the package: the demo images, which double as the normalisation reference set."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
TUBINGEN = DATA / "tubingen.jpg"  # the paper's content photo (Fig. 2 A), Andreas Praefcke, CC BY 3.0
STARRY_NIGHT = DATA / "starry_night.jpg"  # Fig. 2 C, Van Gogh, public domain
SHIPWRECK = DATA / "shipwreck.jpg"  # Fig. 2 B, Turner, public domain
THE_SCREAM = DATA / "the_scream.jpg"  # Fig. 2 D, Munch, public domain

DEMO_CONTENT, DEMO_STYLE = TUBINGEN, STARRY_NIGHT
#: The images over which `caffe-normalized` makes each filter's mean activation 1.
REFERENCE_IMAGES = (TUBINGEN, STARRY_NIGHT, SHIPWRECK, THE_SCREAM)
