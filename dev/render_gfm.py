"""Renders Markdown from stdin to HTML on stdout the way GitHub renders a job
summary: cmark-gfm (GitHub's own CommonMark + GFM implementation, through
the cmarkgfm bindings) with GitHub's extensions (tables, autolinks,
strikethrough, tag filter, task lists). Raw HTML is let through (UNSAFE), so
an element that host text could make shows up as one: stricter than GitHub,
whose sanitiser would drop some of them afterwards. For tests/it/action.rs.
"""

import sys

import cmarkgfm
from cmarkgfm.cmark import Options

sys.stdout.write(cmarkgfm.github_flavored_markdown_to_html(sys.stdin.read(), options=Options.CMARK_OPT_UNSAFE))
