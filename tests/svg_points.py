#!/usr/bin/env python3
"""svg_points.py FILE: parse an SVG of cli/svg_plot.c with xml.etree (so it must be
well-formed) and print what test_svg_plot.c checks, one item a line: the root's tag, every
circle inside the plot area as "circle CX CY", every polyline as "polyline POINTS", every dashed
line as "dashed Y1", every text's content as "text ...". Exit 1 when the file does not parse."""
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def main(path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        print("parse error:", e)
        return 1
    print("root", root.tag.replace(NS, ""))
    for el in root.iter():
        tag = el.tag.replace(NS, "")
        if tag == "circle":
            print("circle %.2f %.2f" % (float(el.get("cx")), float(el.get("cy"))))
        elif tag == "polyline":
            print("polyline", el.get("points"))
        elif tag == "line" and el.get("stroke-dasharray"):
            print("dashed %.2f" % float(el.get("y1")))
        elif tag == "text":
            print("text", "".join(el.itertext()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
