"""Rules that keep what a run will need, not only what it touched.

A trace sees the code paths that ran. Interpreted applications load code and data lazily (a route imports
a module on its first request, a database opens a relation file on the first query), so an image made of
the touched files alone passes the slimming run and fails on the first request nobody probed. Each rule
here is one small unit: a name (for `--no-rule NAME`), the ReasonKind its paths carry, and a `keep`
function that, given the image, the trace and what the closure keeps so far, names more paths to keep.

compute_closure applies the enabled rules, follows the ELF dependencies and `#!` lines of what they added,
and applies them again until nothing new comes. Rules only read the rootfs index; they are idempotent, and
a symlink a rule keeps is followed by the closure (its target is kept too).
"""
