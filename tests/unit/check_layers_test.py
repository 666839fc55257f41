#!/usr/bin/env python3
"""Tests of scripts/check_layers.py on small temporary trees: it passes a tree whose edges the
arrows allow and fails, naming file:line and both folders, on a forbidden include or link.
Runs as the CTest test `check_layers_test` (label unit):  python3 tests/unit/check_layers_test.py
"""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "check_layers.py")
sys.path.insert(0, os.path.dirname(SCRIPT))
import check_layers  # noqa: E402


def write(root, rel, text=""):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class layer_check_test(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        # A small allowed tree: headers in each folder's include/, edges that follow the arrows.
        write(self.root, "core/include/ridgeline/core/errors.hpp", "#pragma once\n")
        write(self.root, "kernels/include/ridgeline/kernels/ops.hpp",
              '#pragma once\n#include "ridgeline/core/errors.hpp"\n')
        write(self.root, "kernels/cuda/raii.hpp", "#pragma once\n")
        write(self.root, "kernels/cuda/linear.cu", '#include "raii.hpp"\n')
        write(self.root, "engine/include/ridgeline/engine/scheduler.hpp",
              '#pragma once\n#include "ridgeline/kernels/ops.hpp"\n')
        write(self.root, "tools/probe/include/ridgeline/probe/probe.hpp", "#pragma once\n")
        write(self.root, "tools/probe/src/probe.cpp",
              '#include "ridgeline/probe/probe.hpp"\n#include "cuda/raii.hpp"\n')
        write(self.root, "tools/plan/include/ridgeline/plan/plan.hpp", "#pragma once\n")
        write(self.root, "tools/roofline/src/roofline.cpp",
              '#include "ridgeline/probe/probe.hpp"\n#include "ridgeline/engine/scheduler.hpp"\n')
        write(self.root, "cli/plan_command.cpp",
              '#include <vector>\n#include "cli.hpp"\n#include "ridgeline/plan/plan.hpp"\n')
        write(self.root, "cli/cli.hpp", "#pragma once\n")
        write(self.root, "tests/unit/cli_test.cpp",
              '#include "cli.hpp"\n#include "cuda/raii.hpp"\n')
        write(self.root, "CMakeLists.txt", "add_library(ridgeline_warnings INTERFACE)\n")
        write(self.root, "core/CMakeLists.txt",
              "add_library(ridgeline_core src/a.cpp)  # no arrows out\n")
        write(self.root, "engine/CMakeLists.txt",
              "add_library(ridgeline_engine src/e.cpp)\n"
              "target_link_libraries(ridgeline_engine\n  PUBLIC ridgeline_core\n"
              "  PRIVATE ridgeline_warnings CUDA::cudart)\n")
        write(self.root, "tools/plan/CMakeLists.txt",
              "add_library(ridgeline_plan src/plan.cpp)\n"
              "target_link_libraries(ridgeline_plan PUBLIC ridgeline_engine)\n")

    def tearDown(self):
        self.tmp.cleanup()

    def check(self, *extra):
        r = subprocess.run([sys.executable, SCRIPT, "--root", self.root, "--skip-doc", *extra],
                           capture_output=True, text=True)
        return r.returncode, r.stdout

    def test_allowed_tree_passes(self):
        code, out = self.check()
        self.assertEqual((code, out), (0, ""))

    def test_upward_include_fails_with_file_and_line(self):
        write(self.root, "core/src/bad.cpp",
              '// leaf\n#include "ridgeline/core/errors.hpp"\n'
              '#include "ridgeline/engine/scheduler.hpp"\n')
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn('core/src/bad.cpp:3: core -> engine not allowed: '
                      '#include "ridgeline/engine/scheduler.hpp"', out)
        self.assertEqual(len(out.splitlines()), 1, out)
        # Angle brackets are the same edge.
        write(self.root, "telemetry/src/t.cpp",
              "#include <vector>\n#include <ridgeline/kernels/ops.hpp>\n")
        code, out = self.check()
        self.assertIn("telemetry/src/t.cpp:2: telemetry -> kernels not allowed: "
                      "#include <ridgeline/kernels/ops.hpp>", out)

    def test_forbidden_link_fails_with_both_targets(self):
        write(self.root, "core/CMakeLists.txt",
              "add_library(ridgeline_core src/a.cpp)\n\n"
              "target_link_libraries(ridgeline_core PRIVATE ridgeline_warnings\n"
              "                      PUBLIC ridgeline_engine)\n")
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn("core/CMakeLists.txt:3: core -> engine not allowed: "
                      "ridgeline_core -> ridgeline_engine", out)

    def test_tool_to_tool_only_where_listed(self):
        write(self.root, "tools/plan/src/plan.cpp", '#include "ridgeline/probe/probe.hpp"\n')
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn("tools/plan/src/plan.cpp:1: tools/plan -> tools/probe not allowed", out)
        # roofline -> probe is listed, so the setUp tree's roofline include is not reported.
        self.assertNotIn("roofline", out)

    def test_relative_header_of_another_folder_is_an_edge(self):
        # "cuda/raii.hpp" lives in kernels/: fine from a tool and from tests, not from cli.
        write(self.root, "cli/probe_command.cpp", '#include "cuda/raii.hpp"\n')
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn("cli/probe_command.cpp:1: cli -> kernels not allowed", out)

    def test_bench_may_not_use_tools_or_cli(self):
        write(self.root, "bench/kv_bench.cpp",
              '#include "ridgeline/plan/plan.hpp"\n#include "cli.hpp"\n')
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn("bench/kv_bench.cpp:1: bench -> tools/plan not allowed", out)
        self.assertIn("bench/kv_bench.cpp:2: bench -> cli not allowed", out)

    def test_doc_table_must_match(self):
        r = subprocess.run([sys.executable, SCRIPT, "--root", self.root],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)  # no docs/architecture.md
        self.assertIn("docs/architecture.md: no layers:begin/layers:end table", r.stdout)
        table = check_layers.table_text()
        write(self.root, "docs/architecture.md",
              "# x\n<!-- layers:begin -->\n```\n" + table + "\n```\n<!-- layers:end -->\n")
        r = subprocess.run([sys.executable, SCRIPT, "--root", self.root],
                           capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stdout), (0, ""))
        write(self.root, "docs/architecture.md",
              "<!-- layers:begin -->\n```\n" + table +
              "\ncore -> engine\n```\n<!-- layers:end -->\n")
        r = subprocess.run([sys.executable, SCRIPT, "--root", self.root],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("docs/architecture.md: the drawn table differs", r.stdout)

    def test_cuda_type_in_a_public_header_fails(self):
        # Fine in kernels/cuda/ and in comments; not in an include/ header.
        write(self.root, "kernels/cuda/launch.hpp",
              "#include <cuda_runtime.h>\nvoid f(cudaStream_t s);\n")
        write(self.root, "engine/include/ridgeline/engine/doc.hpp",
              "#pragma once\n// the cuda executor takes a cudaStream_t of its own\n"
              "#ifdef __CUDACC__\n#define RIDGELINE_HD __host__ __device__\n#endif\n")
        code, out = self.check()
        self.assertEqual((code, out), (0, ""))
        write(self.root, "kernels/include/ridgeline/kernels/plan.hpp",
              "#pragma once\n#include <cstdint>\nstruct plan { cudaStream_t stream; };\n")
        write(self.root, "engine/include/ridgeline/engine/run.hpp", "#include <cublasLt.h>\n")
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn("kernels/include/ridgeline/kernels/plan.hpp:3: CUDA in a public header", out)
        self.assertIn("engine/include/ridgeline/engine/run.hpp:1: CUDA in a public header", out)

    def test_allowed_rules(self):
        allowed = check_layers.allowed
        self.assertTrue(allowed("engine", "perfmodel"))
        self.assertFalse(allowed("perfmodel", "engine"))
        self.assertFalse(allowed("kernels", "telemetry"))
        self.assertTrue(allowed("tools/roofline", "tools/sweep"))
        self.assertFalse(allowed("tools/sweep", "tools/roofline"))
        self.assertTrue(allowed("cli", "tools/kv"))
        self.assertFalse(allowed("tools/kv", "cli"))
        self.assertTrue(allowed("tests", "cli"))


if __name__ == "__main__":
    unittest.main()
