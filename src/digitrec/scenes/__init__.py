"""Real-world conditions for handwriting: a digit (or a line of them) as people hand it over.

A *glyph* is ink coverage in a square field, the way MNIST stores a digit: (S, S) float in
[0, 1], the character inside the central 20/28 of the field. An MNIST digit is its (28, 28)
uint8 array / 255 (`glyph_of`); `non_digit` draws shapes that are not digits the same way.

The package, by what each module draws (each imports only those above it):
  canvas      glyphs and layout: `Canvas`, `Layout`, `place()`, `compose_line()`
  strokes     pen strokes: polylines, skeletons, ink redrawn with another pen
  paper       paper, ink and light, rule lines; conditions on plain paper
  pens        pencils, hairlines, markers, coloured pens
  damage      scanners, cameras and handling: low resolution, blur, shadows, borders, dust
  printing    print, neighbours' words, old paper and a scanner's finish, for documents
  documents   around the writing: a form's box and caption, underlines, ticks, a binding
  register    a column cell of a scanned register
  conditions  the registry `CONDITIONS` and rendering: `render_digit()`, `render_line()`
  nondigits   shapes that are not digits

Everything is drawn from the `rng` passed in, so a seed gives the same bytes every time.
numpy and Pillow only: benchmarks and tests use it without torch.
"""

from .canvas import FIELD, GLYPH, Box, Canvas, Layout, blur, compose_line, glyph_height, glyph_of, ink_box, place, \
    resize, union_box
from .conditions import CONDITIONS, DOCUMENTS, Condition, encode, get_condition, render, render_digit, render_glyph, \
    render_line
from .damage import dark_table, low_resolution, phone_photo, rotated, scan_border, soft_gray, speckle
from .documents import binding_shadow, form_box, frame_box, tick_cross, underlined
from .nondigits import LETTERS, NON_DIGITS, SKELETONS, fit_field, non_digit
from .paper import PAPERS, as_mnist, clean_paper, dark_pen, noise, on_paper, paper, ramp, rules, ruled, shadow, \
    to_image, white_paper, write
from .pens import colour_pen, faint_pencil, pen_width
from .printing import printed
from .register import register_cell
from .strokes import draw_strokes, restroke, smooth_path, thin

__all__ = [
    "FIELD", "GLYPH", "Box", "Canvas", "Layout", "blur", "compose_line", "glyph_height", "glyph_of", "ink_box", "place",
    "resize", "union_box", "CONDITIONS", "DOCUMENTS", "Condition", "encode", "get_condition", "render", "render_digit",
    "render_glyph", "render_line", "dark_table", "low_resolution", "phone_photo", "rotated", "scan_border",
    "soft_gray", "speckle", "binding_shadow", "form_box", "frame_box", "tick_cross", "underlined", "printed",
    "register_cell", "LETTERS", "NON_DIGITS", "SKELETONS", "fit_field", "non_digit", "PAPERS",
    "as_mnist", "clean_paper", "dark_pen", "noise", "on_paper", "paper", "ramp", "rules", "ruled", "shadow",
    "to_image", "white_paper", "write", "colour_pen", "faint_pencil", "pen_width", "draw_strokes", "restroke",
    "smooth_path", "thin",
]
