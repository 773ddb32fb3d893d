"""Charts as inline SVG, drawn on the server: a time series and a scatter plot. No chart library, no script.

The functions return markup (markupsafe.Markup) that a template puts in the page as it is; every piece of text
in it (titles, labels, tooltips) is escaped here.
"""

import math
import time

from markupsafe import Markup, escape

WIDTH, HEIGHT = 360, 120
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 62, 10, 8, 20


def human(value, unit=""):
    """12345 B -> '12.1 KB' (steps of 1024), 12345 -> '12.3 K', 2.5 ms -> '2.5 ms'; None -> '–'."""
    if value is None:
        return "–"
    if unit not in ("B", ""):
        return "%.3g %s" % (value, unit)
    step = 1024 if unit == "B" else 1000
    for prefix in ("", "K", "M", "G"):
        if abs(value) < step or prefix == "G":
            text = ("%d" % value) if prefix == "" and float(value).is_integer() else "%.3g" % value
            return ("%s %s%s" % (text, prefix, unit)).strip()
        value /= step
    return str(value)


def _ticks(lo, hi, count=3):
    """Round tick values covering lo..hi."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _axis(lo, hi, unit, count=3):
    """[(value, label)] of round ticks over lo..hi. Bytes and counts are ticked in the prefix that suits the
    range (KB steps of 1024), with as many digits as the step needs: 1534.2 KB, 1535.2 KB for a small change of
    a large value; 0.5 MB, 1.0 MB; never 1.5 MB twice."""
    if unit not in ("B", ""):
        return [(v, human(v, unit)) for v in _ticks(lo, hi, count)]
    base = 1024 if unit == "B" else 1000
    power = 0
    while power < 3 and (hi - lo) / count / base ** (power + 1) >= 0.1:
        power += 1
    scale = base ** power
    ticks = _ticks(lo / scale, hi / scale, count)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    prefix = ("", "K", "M", "G")[power]
    return [(t * scale, "0" if t == 0 else ("%.*f %s%s" % (decimals, t, prefix, unit)).strip()) for t in ticks]


def _clock(t, span):
    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span < 2 * 86400 else "%m-%d"
    return time.strftime(fmt, time.localtime(t))


def time_series(points, title, unit="", width=WIDTH, height=HEIGHT):
    """A line chart of [(unix time, value)], with its last value in the title."""
    head = '<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">' % (width, height, escape(title))
    if not points:
        return Markup(head + '<text class="empty" x="%d" y="%d">no samples yet</text></svg>'
                      % (width // 2, height // 2))
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    t0, t1 = min(ts), max(ts)
    lo, hi = min(vs), max(vs)
    if lo == hi:
        lo, hi = (lo - 1, hi + 1) if lo == 0 else (lo * 0.9, hi * 1.1) if lo > 0 else (lo * 1.1, hi * 0.9)
    lo = 0 if lo > 0 and lo < (hi - lo) else lo   # start the axis at 0 unless that flattens the line
    x0, x1, y0, y1 = PAD_LEFT, width - PAD_RIGHT, height - PAD_BOTTOM, PAD_TOP

    def x(t):
        return x0 + (x1 - x0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.5)

    def y(v):
        return y0 + (y1 - y0) * (v - lo) / (hi - lo)

    parts = [head]
    for v, label in _axis(lo, hi, unit):
        parts.append('<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>' % (x0, x1, y(v), y(v)))
        parts.append('<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>' % (x0 - 4, y(v) + 3, escape(label)))
    span = t1 - t0
    parts.append('<text class="tick" x="%d" y="%d">%s</text>' % (x0, height - 5, _clock(t0, span)))
    if span > 0:
        parts.append('<text class="tick" x="%d" y="%d" text-anchor="end">%s</text>' % (x1, height - 5, _clock(t1, span)))
    line = " ".join("%.1f,%.1f" % (x(t), y(v)) for t, v in points)
    parts.append('<polyline class="line" points="%s"/>' % line)
    for t, v in points[-60:]:
        parts.append('<circle class="dot" cx="%.1f" cy="%.1f" r="2"><title>%s: %s</title></circle>'
                     % (x(t), y(v), _clock(t, 0), escape(human(v, unit))))
    parts.append("</svg>")
    return Markup("".join(parts))


def scatter(series, x_title, y_title, x_unit="", width=560, height=260):
    """A scatter plot; series: [(name, [(x, y, tooltip)])], one colour class each (s0, s1, ...)."""
    pts = [(x, y) for _, ps in series for x, y, _ in ps if x is not None and y is not None]
    head = ('<svg class="chart scatter" viewBox="0 0 %d %d" role="img" aria-label="%s against %s">'
            % (width, height, escape(y_title), escape(x_title)))
    if not pts:
        return Markup(head + '<text class="empty" x="%d" y="%d">no variant has a measured accuracy yet</text></svg>'
                      % (width // 2, height // 2))
    pad_l, pad_r, pad_t, pad_b = 52, 140, 10, 34
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xlo, xhi = 0, max(xs) * 1.05 or 1
    ylo, yhi = max(0.0, math.floor((min(ys) - 0.05) * 10) / 10), 1.0

    def px(v):
        return pad_l + (width - pad_l - pad_r) * (v - xlo) / (xhi - xlo)

    def py(v):
        return height - pad_b - (height - pad_t - pad_b) * (v - ylo) / (yhi - ylo)

    parts = [head]
    for v in _ticks(ylo, yhi, 4):
        parts.append('<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>' % (pad_l, width - pad_r, py(v), py(v)))
        parts.append('<text class="tick" x="%d" y="%.1f" text-anchor="end">%.0f%%</text>' % (pad_l - 4, py(v) + 3, v * 100))
    for v, label in _axis(xlo, xhi, x_unit, 4):
        parts.append('<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>'
                     % (px(v), height - pad_b + 14, escape(label)))
    parts.append('<text class="axis" x="%d" y="%d" text-anchor="middle">%s</text>'
                 % ((pad_l + width - pad_r) // 2, height - 4, escape(x_title)))
    parts.append('<text class="axis" x="12" y="%d" transform="rotate(-90 12 %d)" text-anchor="middle">%s</text>'
                 % (height // 2, height // 2, escape(y_title)))
    for i, (name, ps) in enumerate(series):
        cls = "s%d" % (i % 6)
        for x, y, tip in ps:
            if x is None or y is None:
                continue
            parts.append('<circle class="pt %s" cx="%.1f" cy="%.1f" r="4"><title>%s</title></circle>'
                         % (cls, px(x), py(y), escape(tip)))
        ly = pad_t + 6 + 16 * i
        parts.append('<circle class="pt %s" cx="%d" cy="%d" r="4"/><text class="legend" x="%d" y="%d">%s</text>'
                     % (cls, width - pad_r + 14, ly, width - pad_r + 22, ly + 4, escape(name)))
    parts.append("</svg>")
    return Markup("".join(parts))
