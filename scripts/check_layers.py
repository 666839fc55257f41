#!/usr/bin/env python3
"""The layer check: fails on any include or link edge between folders that the arrows of
docs/architecture.md do not allow.

  python3 scripts/check_layers.py              # the repository this script lives in
  python3 scripts/check_layers.py --root DIR   # another tree (the unit test uses temp trees)

It reads (1) every #include "..." (and <ridgeline/...>) in the C++/CUDA sources of the checked
folders, resolving the header to the folder that owns it (ridgeline/<x>/... through the folders'
include/ directories, other quoted paths next to the including file or by their unique place in
the tree), and (2) every target_link_libraries in every CMakeLists.txt, mapping each target to
the folder whose CMakeLists.txt defines it. One line per forbidden edge (file:line: from -> to:
what), exit 1; exit 0 when every edge is allowed. It also holds the CUDA-optional rule: no header
under a folder's include/ may name a CUDA type or include a CUDA header (those live in
kernels/cuda/, engine/cuda/ and the tools' CUDA halves). And it checks that the table drawn in
docs/architecture.md (between the layers:begin and layers:end markers) is this table, so the two
cannot drift.
Standard library only; runs as the CTest test `check_layers` (label unit).
"""

import argparse
import os
import re
import sys

# Folder -> the folders it may use. A tools/<x> folder is the layer "tools"; "tools" in a row
# means every tools/<x>, but a tool may use another tool only through TOOL_ARROWS. "*" means any.
# Keep in step with docs/architecture.md (the script checks that it is).
ALLOWED = {
    "core": [],
    "telemetry": ["core"],
    "kernels": ["core"],
    "perfmodel": ["kernels", "core"],
    "engine": ["kernels", "perfmodel", "telemetry", "core"],
    "tools": ["engine", "perfmodel", "kernels", "telemetry", "core"],
    "cli": ["tools", "engine", "perfmodel", "telemetry", "core"],
    "bench": ["engine", "perfmodel", "kernels", "telemetry", "core"],
    "tests": ["*"],
    "fuzz": ["*"],
}
# The only arrows from one tool to another: roofline places the probe's ceilings and the sweep's
# step work on its chart.
TOOL_ARROWS = [
    ("tools/roofline", "tools/probe"),
    ("tools/roofline", "tools/sweep"),
    ("tools/replay", "tools/kv"),
    ("tools/serve", "tools/replay"),
]

CHECKED = ["core", "telemetry", "kernels", "perfmodel", "engine", "tools", "cli", "bench", "tests",
           "fuzz"]
SOURCE_SUFFIXES = (".cpp", ".hpp", ".cu", ".cuh", ".h", ".cc", ".cxx", ".inl")
DOC = os.path.join("docs", "architecture.md")

# "any/path.hpp", and <ridgeline/...> in case someone writes our headers with angle brackets.
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*(?:"([^"]+)"|<(ridgeline/[^>]+)>)')
# What a public header must not name: CUDA runtime/driver/library types and CUDA headers.
# (__host__ __device__ qualifiers behind #ifdef __CUDACC__ are allowed: they name no type.)
CUDA_RE = re.compile(r"#\s*include\s*[<\"](cuda|cublas|cupti|curand|nvml|nvtx)|"
                     r"\b(cuda[A-Z]\w*_t|CU[a-z]\w*|cublas\w*_t)\b")
COMMAND_RE = re.compile(r"\b(add_library|add_executable|target_link_libraries)\s*\(", re.I)


def layer_of(folder):
    return "tools" if folder.startswith("tools/") else folder


def folder_of(path, root):
    """core/src/x.cpp -> core, tools/plan/src/y.cpp -> tools/plan; None outside the layers."""
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    parts = rel.split("/")
    if parts[0] == "tools":
        return "tools/" + parts[1] if len(parts) > 2 else None
    return parts[0] if parts[0] in CHECKED else None


def allowed(src, dst):
    if src == dst or src is None or dst is None:
        return True
    rule = ALLOWED.get(layer_of(src), [])
    if "*" in rule:
        return True
    if layer_of(dst) == "tools" and layer_of(src) == "tools":
        return (src, dst) in TOOL_ARROWS
    return layer_of(dst) in rule


def walk_sources(root):
    for top in CHECKED:
        base = os.path.join(root, top)
        if not os.path.isdir(base):
            continue
        for d, dirs, files in os.walk(base):
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            for f in sorted(files):
                if f.endswith(SOURCE_SUFFIXES) or f == "CMakeLists.txt":
                    yield os.path.join(d, f)


class tree:
    """Where each header lives: ridgeline/<x>/... roots and every file by path suffix."""

    def __init__(self, root):
        self.root = root
        self.files = [p for p in walk_sources(root) if not p.endswith("CMakeLists.txt")]
        self.by_name = {}
        for p in self.files:
            self.by_name.setdefault(os.path.basename(p), []).append(p)

    def owner(self, including, header):
        # Next to the including file (how the compiler looks first).
        here = os.path.normpath(os.path.join(os.path.dirname(including), header))
        if os.path.isfile(here):
            return folder_of(here, self.root)
        # Anywhere else: the files whose path ends with the included path. A header found in one
        # folder only has that owner; ridgeline/<x>/ headers live in <folder>/include/.
        suffix = "/" + header
        owners = set()
        for p in self.by_name.get(os.path.basename(header), []):
            if p.replace(os.sep, "/").endswith(suffix):
                owners.add(folder_of(p, self.root))
        owners.discard(None)
        if len(owners) == 1:
            return owners.pop()
        return None  # a system or generated header, or ambiguous: not an edge we can name


def include_edges(t):
    for path in t.files:
        src = folder_of(path, t.root)
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                header = m.group(1) or m.group(2)
                written = '"%s"' % header if m.group(1) else "<%s>" % header
                dst = t.owner(path, header)
                if dst is not None and dst != src:
                    yield path, n, src, dst, "#include " + written


def cuda_in_public_headers(t):
    for path in t.files:
        rel = os.path.relpath(path, t.root).replace(os.sep, "/")
        if "/include/" not in "/" + rel:
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                code = line.split("//", 1)[0]
                m = CUDA_RE.search(code)
                if m:
                    yield path, n, m.group(0)


def cmake_commands(text):
    """(command, line, arguments) of add_library/add_executable/target_link_libraries."""
    clean = re.sub(r"#[^\n]*", "", text)
    for m in COMMAND_RE.finditer(clean):
        depth, i = 1, m.end()
        while i < len(clean) and depth:
            depth += {"(": 1, ")": -1}.get(clean[i], 0)
            i += 1
        args = clean[m.end():i - 1].split()
        yield m.group(1).lower(), clean.count("\n", 0, m.start()) + 1, args


def link_edges(root):
    lists = [p for p in walk_sources(root) if p.endswith("CMakeLists.txt")]
    top = os.path.join(root, "CMakeLists.txt")
    defined = {}  # target -> folder
    parsed = []
    for path in ([top] if os.path.isfile(top) else []) + lists:
        with open(path, encoding="utf-8") as f:
            commands = list(cmake_commands(f.read()))
        parsed.append((path, commands))
        for cmd, _, args in commands:
            if cmd in ("add_library", "add_executable") and args:
                defined[args[0]] = folder_of(path, root)
    keywords = {"PUBLIC", "PRIVATE", "INTERFACE", "LINK_PUBLIC", "LINK_PRIVATE"}
    for path, commands in parsed:
        here = folder_of(path, root)
        for cmd, line, args in commands:
            if cmd != "target_link_libraries" or not args:
                continue
            target = args[0]
            src = defined.get(target, here)
            for lib in args[1:]:
                if lib in keywords or lib not in defined:
                    continue  # keywords and outside libraries (CUDA::cudart, GTest, ...)
                dst = defined[lib]
                if dst is not None and dst != src:
                    yield path, line, src, dst, "%s -> %s" % (target, lib)


def table_text():
    """The table as docs/architecture.md draws it: one `from -> to, to` line per row."""
    lines = []
    for k, v in ALLOWED.items():
        lines.append("%-10s -> %s" % (k, ", ".join(v) if v else "(nothing)"))
    for a, b in TOOL_ARROWS:
        lines.append("%-10s -> %s" % (a, b))
    return "\n".join(lines)


def doc_table(root):
    path = os.path.join(root, DOC)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- layers:begin -->\s*```[a-z]*\n(.*?)```\s*<!-- layers:end -->", text, re.S)
    if not m:
        return path, None
    return path, "\n".join(l.rstrip() for l in m.group(1).strip().splitlines())


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--skip-doc", action="store_true",
                    help="do not compare the table with docs/architecture.md")
    a = ap.parse_args(argv)
    root = os.path.abspath(a.root)
    bad = []
    t = tree(root)
    for path, line, src, dst, what in list(include_edges(t)) + list(link_edges(root)):
        if not allowed(src, dst):
            bad.append("%s:%d: %s -> %s not allowed: %s" %
                       (os.path.relpath(path, root), line, src, dst, what))
    for path, line, what in cuda_in_public_headers(t):
        bad.append("%s:%d: CUDA in a public header (CUDA is optional): %s" %
                   (os.path.relpath(path, root), line, what))
    if not a.skip_doc:
        path, drawn = doc_table(root) if os.path.isfile(os.path.join(root, DOC)) else (DOC, None)
        if drawn is None:
            bad.append("%s: no layers:begin/layers:end table (expected:\n%s)" % (DOC, table_text()))
        elif drawn != table_text():
            bad.append("%s: the drawn table differs from scripts/check_layers.py; expected:\n%s" %
                       (DOC, table_text()))
    for b in bad:
        print(b)
    if bad:
        print("check_layers: %d problem(s); allowed arrows: docs/architecture.md" % len(bad),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
