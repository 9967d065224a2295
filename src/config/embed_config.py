#!/usr/bin/env python3
"""Writes a C file defining config_default_json[] from config/gatherd.json, so the built-in
default and the shipped file can never drift apart."""
import sys

src, dst = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
with open(dst, 'w') as out:
    out.write('/* Generated from config/gatherd.json by embed_config.py; do not edit. */\n')
    out.write('const char config_default_json[] = {\n')
    for i in range(0, len(data), 16):
        out.write('    ' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    out.write('    0x00};\n')
