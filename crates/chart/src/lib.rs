//! Small PNG charts drawn without a plotting library: a raster, lines, dots, a 5×7 pixel font, and a PNG
//! encoder (zlib from flate2, which the workspace already builds). `stoke tune --chart` draws
//! [`tune_chart`]; the benchmarks (`stoke-bench`) draw [`lines_chart`].

use std::io::Write;

type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [40, 40, 40];
const GRID: Rgb = [225, 225, 225];
const BLUE: Rgb = [31, 119, 180];
const ORANGE: Rgb = [230, 120, 20];
const GREEN: Rgb = [44, 160, 44];
/// Series colours, in order.
const PALETTE: [Rgb; 6] = [BLUE, ORANGE, GREEN, [214, 39, 40], [148, 103, 189], [140, 86, 75]];

/// An RGB raster.
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

/// Rows of each glyph, top to bottom; bit 4 is the leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '$' => [0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        _ => [0; 7],
    }
}

impl Canvas {
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, pixels: WHITE.repeat(width * height) }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) else { return };
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    /// A line `thick` pixels wide (Bresenham, with a square brush).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), thick: i64, c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.rect(x - thick / 2, y - thick / 2, thick, thick, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn dot(&mut self, (x, y): (i64, i64), r: i64, c: Rgb) {
        for yy in -r..=r {
            for xx in -r..=r {
                if xx * xx + yy * yy <= r * r {
                    self.set(x + xx, y + yy, c);
                }
            }
        }
    }

    /// Text at (x, y) (top left), `scale` pixels per font pixel; returns its width.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) -> i64 {
        let mut cx = x;
        for ch in s.chars() {
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.rect(cx + col * scale, y + row as i64 * scale, scale, scale, c);
                    }
                }
            }
            cx += 6 * scale;
        }
        cx - x
    }

    fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 6 * scale
    }

    /// The raster as a PNG file (8-bit RGB, no interlace).
    pub fn png(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity((self.width * 3 + 1) * self.height);
        for row in self.pixels.chunks(self.width * 3) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = z.write_all(&raw);
        let idat = z.finish().unwrap_or_default();
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&png_u32(self.width).to_be_bytes());
        ihdr.extend_from_slice(&png_u32(self.height).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", &ihdr[..]), (b"IDAT", &idat[..]), (b"IEND", &[][..])] {
            out.extend_from_slice(&png_u32(data.len()).to_be_bytes());
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc.sum().to_be_bytes());
        }
        out
    }
}

/// Round tick steps: 1, 2 or 5 × 10^n, about `n` ticks over `max`.
fn tick_step(max: f64, n: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / n;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One memory size a tune tested: its warm duration and its cost per call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunePoint {
    pub memory_mb: u32,
    pub warm_ms: f64,
    /// Dollars per call.
    pub cost: f64,
}

/// `function`'s warm duration (left axis, blue) and cost per call (right axis, orange) against memory; the
/// `recommended` size is marked green. The caller leaves out sizes that failed.
pub fn tune_chart(function: &str, sizes: &[TunePoint], recommended: Option<u32>) -> Vec<u8> {
    let (w, h) = (900i64, 520i64);
    let (left, right, top, bottom) = (90i64, w - 100, 70i64, h - 70);
    let mut c = Canvas::new(usize::try_from(w).unwrap_or(0), usize::try_from(h).unwrap_or(0));
    let points: Vec<(u32, f64, f64)> = sizes.iter().map(|p| (p.memory_mb, p.warm_ms, p.cost * 1e6)).collect();
    let title = format!("STOKE TUNE {function}: WARM MS AND COST PER CALL BY MEMORY");
    c.text(left, 12, &title, 2, INK);
    // Memory on a log scale: the tested sizes are roughly geometric.
    let lg = |m: u32| f64::from(m.max(1)).log2();
    let min_mem = points.iter().map(|p| lg(p.0)).fold(f64::INFINITY, f64::min);
    let max_mem = points.iter().map(|p| lg(p.0)).fold(f64::NEG_INFINITY, f64::max);
    let span = if max_mem > min_mem { max_mem - min_mem } else { 1.0 };
    let max_ms = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    let max_cost = points.iter().map(|p| p.2).fold(0.0, f64::max) * 1.1;
    let pad = 30;
    let x_of = |m: u32| left + pad + pixel(((lg(m) - min_mem) / span) * (right - left - 2 * pad) as f64);
    let y_of = |v: f64, max: f64| bottom - pixel((v / max.max(f64::MIN_POSITIVE)) * (bottom - top) as f64);
    // Grid and ticks.
    let step = tick_step(max_ms, 5.0);
    let mut v = 0.0;
    while v <= max_ms {
        let y = y_of(v, max_ms);
        c.line((left, y), (right, y), 1, GRID);
        let l = label(v);
        c.text(left - 8 - Canvas::text_width(&l, 2), y - 7, &l, 2, BLUE);
        v += step;
    }
    let step = tick_step(max_cost, 5.0);
    let mut v = 0.0;
    while v <= max_cost && max_cost > 0.0 {
        c.text(right + 8, y_of(v, max_cost) - 7, &label(v), 2, ORANGE);
        v += step;
    }
    for p in &points {
        let x = x_of(p.0);
        c.line((x, bottom), (x, bottom + 5), 1, INK);
        let l = p.0.to_string();
        c.text(x - Canvas::text_width(&l, 2) / 2, bottom + 10, &l, 2, INK);
    }
    c.line((left, top), (left, bottom), 2, INK);
    c.line((left, bottom), (right, bottom), 2, INK);
    c.line((right, top), (right, bottom), 2, INK);
    c.text((left + right) / 2 - Canvas::text_width("MEMORY MB", 2) / 2, h - 30, "MEMORY MB", 2, INK);
    c.text(10, top - 28, "WARM MS", 2, BLUE);
    c.text(w - 8 - Canvas::text_width("MICRO-$/CALL", 2), top - 28, "MICRO-$/CALL", 2, ORANGE);
    // Series.
    for (series, color) in [(1usize, BLUE), (2, ORANGE)] {
        let max = if series == 1 { max_ms } else { max_cost };
        let xy: Vec<(i64, i64)> =
            points.iter().map(|p| (x_of(p.0), y_of(if series == 1 { p.1 } else { p.2 }, max))).collect();
        for pair in xy.windows(2) {
            c.line(pair[0], pair[1], 3, color);
        }
        for p in &xy {
            c.dot(*p, 5, color);
        }
    }
    if let Some(memory_mb) = recommended {
        if let Some(p) = points.iter().find(|p| p.0 == memory_mb) {
            let (x, y) = (x_of(p.0), y_of(p.1, max_ms));
            c.dot((x, y), 8, GREEN);
            c.text(x + 12, y - 24, "RECOMMENDED", 2, GREEN);
        }
    }
    c.png()
}

/// One line of a chart: its name, whether it is dashed, and its points (x, y).
pub type Series = (String, bool, Vec<(f64, f64)>);

/// A line chart of `series` (name, dashed, points (x, y)): x on a log₂ scale (concurrency levels), y from 0.
/// Consecutive series pairs share a colour (a solid one and its dashed counterpart); a legend names them.
pub fn lines_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Vec<u8> {
    let (w, h) = (1000i64, 560i64);
    let (left, right, top, bottom) = (90i64, w - 260, 70i64, h - 70);
    let mut c = Canvas::new(usize::try_from(w).unwrap_or(0), usize::try_from(h).unwrap_or(0));
    c.text(left, 12, title, 2, INK);
    let points = series.iter().flat_map(|s| s.2.iter().copied());
    let lg = |x: f64| x.max(f64::MIN_POSITIVE).log2();
    let (mut min_x, mut max_x, mut max_y) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for (x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (min_x, max_x, max_y) = (min_x.min(lg(x)), max_x.max(lg(x)), max_y.max(y));
    }
    if !min_x.is_finite() {
        return c.png();
    }
    let span = if max_x > min_x { max_x - min_x } else { 1.0 };
    let max_y = max_y * 1.1;
    let pad = 20;
    let x_of = |x: f64| left + pad + pixel(((lg(x) - min_x) / span) * (right - left - 2 * pad) as f64);
    let y_of = |v: f64| bottom - pixel((v / max_y.max(f64::MIN_POSITIVE)) * (bottom - top) as f64);
    let step = tick_step(max_y, 5.0);
    let mut v = 0.0;
    while v <= max_y {
        let y = y_of(v);
        c.line((left, y), (right, y), 1, GRID);
        let l = label(v);
        c.text(left - 8 - Canvas::text_width(&l, 2), y - 7, &l, 2, INK);
        v += step;
    }
    let mut xs: Vec<f64> = series.iter().flat_map(|s| s.2.iter().map(|p| p.0)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in xs {
        let px = x_of(x);
        c.line((px, bottom), (px, bottom + 5), 1, INK);
        let l = label(x);
        c.text(px - Canvas::text_width(&l, 2) / 2, bottom + 10, &l, 2, INK);
    }
    c.line((left, top), (left, bottom), 2, INK);
    c.line((left, bottom), (right, bottom), 2, INK);
    c.text((left + right) / 2 - Canvas::text_width(x_label, 2) / 2, h - 30, x_label, 2, INK);
    c.text(10, top - 28, y_label, 2, INK);
    for (i, (name, dashed, pts)) in series.iter().enumerate() {
        let color = PALETTE[(i / 2) % PALETTE.len()];
        let xy: Vec<(i64, i64)> = pts.iter().filter(|p| p.1.is_finite()).map(|p| (x_of(p.0), y_of(p.1))).collect();
        for pair in xy.windows(2) {
            if *dashed {
                // Every other eighth of the segment.
                for k in (0..8).step_by(2) {
                    let at = |f: i64| {
                        (pair[0].0 + (pair[1].0 - pair[0].0) * f / 8, pair[0].1 + (pair[1].1 - pair[0].1) * f / 8)
                    };
                    c.line(at(k), at(k + 1), 3, color);
                }
            } else {
                c.line(pair[0], pair[1], 3, color);
            }
        }
        for p in &xy {
            c.dot(*p, if *dashed { 3 } else { 5 }, color);
        }
        let ly = top + 10 + i as i64 * 24;
        let (lx0, lx1) = (right + 20, right + 50);
        if *dashed {
            c.line((lx0, ly + 7), (lx0 + 10, ly + 7), 3, color);
            c.line((lx0 + 20, ly + 7), (lx1, ly + 7), 3, color);
        } else {
            c.line((lx0, ly + 7), (lx1, ly + 7), 3, color);
        }
        c.text(lx1 + 8, ly, name, 2, INK);
    }
    c.png()
}

/// A PNG field: a chart's sizes and chunks are far below 4 GiB.
fn png_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A position on the canvas from a scaled value: truncated toward zero, saturating (NaN is 0), as the
/// drawing clips what falls outside anyway.
#[allow(clippy::cast_possible_truncation)] // float to int `as` saturates: exactly the clipping wanted
fn pixel(v: f64) -> i64 {
    v as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_png_has_a_valid_signature_header_and_checksums() {
        let mut c = Canvas::new(4, 3);
        c.text(0, 0, "A", 1, INK);
        let png = c.png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 4);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 3);
        // Walk the chunks: every CRC matches, the last is IEND, and IDAT inflates to 3 rows of 1 + 4×3 bytes.
        let (mut at, mut kinds, mut raw) = (8, Vec::new(), Vec::new());
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let kind = &png[at + 4..at + 8];
            let data = &png[at + 8..at + 8 + len];
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            assert_eq!(crc.sum().to_be_bytes(), png[at + 8 + len..at + 12 + len]);
            if kind == b"IDAT" {
                std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(data), &mut raw).unwrap();
            }
            kinds.push(String::from_utf8_lossy(kind).to_string());
            at += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        assert_eq!(raw.len(), 3 * 13);
        // "A" has its top row's middle three pixels set (columns 1–3 of 5; only 4 fit).
        assert_eq!(&raw[1..4], &WHITE);
        assert_eq!(&raw[4..7], &INK);
    }

    #[test]
    fn a_lines_chart_draws_every_series_in_its_colour() {
        let series = vec![
            ("a shared".to_string(), false, vec![(1.0, 10.0), (2.0, 12.0), (4.0, 20.0)]),
            ("a copy".to_string(), true, vec![(1.0, 30.0), (2.0, 40.0), (4.0, 80.0)]),
            ("b shared".to_string(), false, vec![(1.0, 5.0), (4.0, f64::NAN)]),
        ];
        let raw = pixels(&lines_chart("T", "X", "Y", &series));
        let has = |c: Rgb| raw.chunks(1 + 1000 * 3).any(|row| row[1..].chunks(3).any(|p| p == c));
        assert!(has(BLUE) && has(ORANGE), "the first pair is blue, the third series orange");
        assert!(!has(GREEN), "no third pair");
        assert!(lines_chart("T", "X", "Y", &[]).starts_with(b"\x89PNG"), "no points still make a PNG");
    }

    /// The PNG's pixels, rows of `1 + width × 3` bytes (a filter byte, then RGB).
    fn pixels(png: &[u8]) -> Vec<u8> {
        let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
        let len = u32::from_be_bytes(png[idat - 4..idat].try_into().unwrap()) as usize;
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&png[idat + 4..idat + 4 + len]), &mut raw)
            .unwrap();
        raw
    }

    #[test]
    fn a_tune_chart_marks_the_recommended_size_in_green() {
        let sizes = [
            TunePoint { memory_mb: 128, warm_ms: 80.0, cost: 2e-7 },
            TunePoint { memory_mb: 256, warm_ms: 40.0, cost: 1.8e-7 },
            TunePoint { memory_mb: 512, warm_ms: 35.0, cost: 3e-7 },
        ];
        let has = |png: &[u8], c: Rgb| pixels(png).chunks(1 + 900 * 3).any(|row| row[1..].chunks(3).any(|p| p == c));
        let png = tune_chart("f", &sizes, Some(256));
        assert!(has(&png, BLUE) && has(&png, ORANGE) && has(&png, GREEN));
        assert!(!has(&tune_chart("f", &sizes, None), GREEN), "no recommendation, no green");
        assert!(tune_chart("f", &[], None).starts_with(b"\x89PNG"), "no sizes still make a PNG");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1000.0, 5.0), 200.0);
        assert_eq!(tick_step(7.3, 5.0), 2.0);
        assert_eq!(tick_step(0.0, 5.0), 1.0);
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(1.5), "1.5");
        assert_eq!(label(200.0), "200");
    }
}
