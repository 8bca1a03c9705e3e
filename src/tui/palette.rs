//! Colours: a perceptual colormap (viridis) for heatmaps, the UI's named colours, and a 256-colour
//! fallback for terminals without truecolor.

use ratatui::style::Color;

/// Viridis control points (matplotlib's `viridis`, sampled at 9 even steps).
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// Whether the terminal advertises 24-bit colour (`COLORTERM=truecolor|24bit`).
pub fn detect_truecolor() -> bool {
    std::env::var("COLORTERM").is_ok_and(|v| v.contains("truecolor") || v.contains("24bit"))
}

/// Viridis at `t` in `[0, 1]` (clamped), as RGB.
pub fn viridis(t: f64) -> (u8, u8, u8) {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let lerp = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * f).round() as u8;
    (lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// The xterm 256-colour index closest to an RGB colour (6x6x6 cube or grey ramp).
pub fn to_ansi256(r: u8, g: u8, b: u8) -> u8 {
    let level = |v: u8| -> u8 {
        if v < 48 {
            0
        } else if v < 115 {
            1
        } else {
            ((u16::from(v) - 35) / 40) as u8
        }
    };
    let (lr, lg, lb) = (level(r), level(g), level(b));
    let cube = |l: u8| if l == 0 { 0 } else { 55 + 40 * u16::from(l) };
    let cube_rgb = (cube(lr), cube(lg), cube(lb));
    let dist = |c: (u16, u16, u16)| {
        let d = |x: u16, y: u8| (i32::from(x) - i32::from(y)).pow(2);
        d(c.0, r) + d(c.1, g) + d(c.2, b)
    };
    let avg = (u16::from(r) + u16::from(g) + u16::from(b)) / 3;
    let grey_idx = if avg > 238 {
        23
    } else {
        avg.saturating_sub(3) / 10
    };
    let grey = 8 + 10 * grey_idx;
    if dist((grey, grey, grey)) < dist(cube_rgb) {
        (232 + grey_idx) as u8
    } else {
        16 + 36 * lr + 6 * lg + lb
    }
}

/// An RGB colour for this terminal: truecolor, or its nearest 256-colour index.
pub fn rgb(r: u8, g: u8, b: u8, truecolor: bool) -> Color {
    if truecolor {
        Color::Rgb(r, g, b)
    } else {
        Color::Indexed(to_ansi256(r, g, b))
    }
}

/// The heatmap colour for `t` in `[0, 1]`.
pub fn heat(t: f64, truecolor: bool) -> Color {
    let (r, g, b) = viridis(t);
    rgb(r, g, b, truecolor)
}

/// A diverging colour for a signed value `t` in `[-1, 1]` (clamped): red for positive, white at
/// 0, blue for negative (ColorBrewer's RdBu via `colorous`), for differences such as statistic
/// minus prior.
pub fn diverging(t: f64, truecolor: bool) -> Color {
    let t = if t.is_finite() {
        t.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    // RED_BLUE runs from red (0) to blue (1).
    let c = colorous::RED_BLUE.eval_continuous(0.5 - 0.5 * t);
    rgb(c.r, c.g, c.b, truecolor)
}

/// Curve colours: current slopes, previous slopes, then compare models.
pub const CURRENT: Color = Color::Cyan;
/// The faded previous-slopes curve.
pub const PREVIOUS: Color = Color::DarkGray;
/// Compare models, in order.
pub const COMPARE: [Color; 4] = [
    Color::Magenta,
    Color::Yellow,
    Color::LightGreen,
    Color::LightRed,
];
/// Recipe curves, in order.
pub const RECIPE: [Color; 5] = [
    Color::LightBlue,
    Color::LightMagenta,
    Color::Green,
    Color::Red,
    Color::Blue,
];
/// The training-length marker.
pub const TRAIN_LEN: Color = Color::White;
/// The length cursor.
pub const CURSOR: Color = Color::LightYellow;
/// Focused panel border.
pub const FOCUS: Color = Color::LightCyan;
/// Errors in the status bar.
pub const ERROR: Color = Color::LightRed;
/// The panels' background: the terminal's own (no panel sets one). Blank cells are spaces on it.
pub const PANEL_BG: Color = Color::Reset;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_clamps() {
        assert_eq!(viridis(0.0), (68, 1, 84));
        assert_eq!(viridis(1.0), (253, 231, 37));
        assert_eq!(viridis(-3.0), viridis(0.0));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
        // Luminance grows monotonically (perceptual order).
        let lum = |(r, g, b): (u8, u8, u8)| {
            0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b)
        };
        let mut last = -1.0;
        for i in 0..=20 {
            let l = lum(viridis(f64::from(i) / 20.0));
            assert!(l > last);
            last = l;
        }
    }

    #[test]
    fn ansi256_fallback() {
        assert_eq!(to_ansi256(0, 0, 0), 16);
        assert_eq!(to_ansi256(255, 255, 255), 231);
        assert_eq!(to_ansi256(255, 0, 0), 196);
        assert_eq!(to_ansi256(128, 128, 128), 244);
        assert_eq!(rgb(1, 2, 3, true), Color::Rgb(1, 2, 3));
        assert!(matches!(heat(0.5, false), Color::Indexed(_)));
    }
}
