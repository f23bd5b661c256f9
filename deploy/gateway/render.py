#!/usr/bin/env python3
"""Renders nginx.conf.template: every ${NAME} from the environment; fails naming the
ones that are missing. Usage: render.py TEMPLATE OUTPUT"""
import os
import re
import sys

template, output = sys.argv[1], sys.argv[2]
text = open(template, encoding="utf-8").read()
names = sorted(set(re.findall(r"\$\{([A-Z0-9_]+)\}", text)))
missing = [n for n in names if not os.environ.get(n)]
if missing:
    sys.exit("gateway: set " + ", ".join(missing))
for name in names:
    text = text.replace("${%s}" % name, os.environ[name])
open(output, "w", encoding="utf-8").write(text)
