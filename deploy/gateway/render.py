#!/usr/bin/env python3
"""Renders nginx.conf.template: every ${NAME} from the environment (set, possibly empty,
like CORS_ALLOWED_ORIGINS); fails naming the ones that are unset. Usage: render.py
TEMPLATE OUTPUT"""
import os
import re
import sys

template, output = sys.argv[1], sys.argv[2]
text = open(template, encoding="utf-8").read()
names = sorted(set(re.findall(r"\$\{([A-Z0-9_]+)\}", text)))
missing = [n for n in names if n not in os.environ]
if missing:
    sys.exit("gateway: set " + ", ".join(missing))
for name in names:
    text = text.replace("${%s}" % name, os.environ[name])
open(output, "w", encoding="utf-8").write(text)
