//! Keys and mouse to [`Action`]s: a pure function of the event and the focused panel, so the same
//! actions drive the app from tests.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// The panels that can hold focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    /// Perplexity vs length.
    #[default]
    Chart,
    /// The slope editor.
    Slopes,
    /// The bias matrices.
    Bias,
    /// The attention heatmap.
    Attention,
}

impl Focus {
    /// All panels in Tab order.
    pub const ALL: [Focus; 4] = [Focus::Chart, Focus::Slopes, Focus::Bias, Focus::Attention];

    /// The next (or previous) panel.
    #[must_use]
    pub fn step(self, forward: bool) -> Focus {
        let i = Focus::ALL.iter().position(|f| *f == self).unwrap_or(0);
        let n = Focus::ALL.len();
        Focus::ALL[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// Everything the user can ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Leave the program.
    Quit,
    /// Show or hide the key help.
    ToggleHelp,
    /// Focus the next/previous panel.
    Focus(bool),
    /// Move the length cursor by grid steps (fine = 1, coarse = one octave).
    MoveLength(i32),
    /// Jump to the shortest (false) or longest (true) length.
    LengthEnd(bool),
    /// Cycle the attention panel's view (heatmap, distance, heads, loss by position).
    NextView,
    /// Write the focused panel as SVG, PNG and JSON.
    Export,
    /// Cycle the statistic of the head grid.
    NextStat,
    /// Show statistic minus prior (or the statistic).
    TogglePriorDiff,
    /// Scroll the help overlay by this many lines.
    ScrollHelp(i32),
    /// Esc: close what is open (the enlarged bias view), else quit.
    Back,
    /// Jump to the training length.
    LengthTrain,
    /// Put the cursor at a column of the chart (mouse).
    LengthAtColumn(u16),
    /// Select the previous/next head.
    Head(i32),
    /// Select the previous/next layer.
    Layer(i32),
    /// Cycle the slope preset.
    NextPreset,
    /// Multiply every slope by this factor.
    ScaleAll(f64),
    /// Multiply the selected head's slope by this factor.
    ScaleHead(f64),
    /// Back to the model's own slopes.
    ResetSlopes,
    /// Save the current slopes to the slope file.
    SaveSlopes,
    /// Load slopes from the slope file.
    LoadSlopes,
    /// Swap the current and previous slopes (A/B).
    SwapAB,
    /// Enlarge the selected head's bias matrix (toggle).
    Enlarge,
    /// Zoom the heatmap in (true) or out.
    Zoom(bool),
    /// Pan the zoomed heatmap by columns.
    Pan(i32),
    /// Move the heatmap's query cursor by rows.
    Query(i32),
    /// Toggle mean/max downsampling of the heatmap.
    ToggleRule,
    /// Toggle mouse capture.
    ToggleMouse,
    /// Switch the chart between token perplexity and bits per byte.
    ToggleMetric,
    /// Add the next long-context recipe curve.
    NextRecipe,
    /// Remove every recipe curve.
    ClearRecipes,
    /// The guided tour: open or leave it, next or previous step.
    Tour(TourMove),
}

/// What the tour keys ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TourMove {
    /// `g`: open the tour (the shipped one when none is loaded) or leave it, keeping the state.
    Toggle,
    /// `n`: the next step.
    Next,
    /// `N`: the previous step.
    Back,
}

/// Grid steps per octave of the length axis.
pub const STEPS_PER_OCTAVE: i32 = 16;
/// Factor for slope edits.
pub const SLOPE_STEP: f64 = 1.25;

/// Maps a key press to an action, given the focused panel and whether help is open.
pub fn map_key(key: KeyEvent, focus: Focus, help_open: bool) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    if help_open {
        return match key.code {
            KeyCode::Char('q') if !ctrl => Some(Action::Quit),
            KeyCode::Char('c') if ctrl => Some(Action::Quit),
            KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter => Some(Action::ToggleHelp),
            KeyCode::Up => Some(Action::ScrollHelp(-1)),
            KeyCode::Down => Some(Action::ScrollHelp(1)),
            KeyCode::PageUp => Some(Action::ScrollHelp(-10)),
            KeyCode::PageDown => Some(Action::ScrollHelp(10)),
            _ => None,
        };
    }
    let vertical = |d: i32| match focus {
        Focus::Attention => Action::Query(d),
        _ => Action::Head(d),
    };
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Action::Quit,
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Tab => Action::Focus(true),
        KeyCode::BackTab => Action::Focus(false),
        KeyCode::Left if shift => Action::MoveLength(-STEPS_PER_OCTAVE),
        KeyCode::Right if shift => Action::MoveLength(STEPS_PER_OCTAVE),
        KeyCode::Left => Action::MoveLength(-1),
        KeyCode::Right => Action::MoveLength(1),
        KeyCode::PageDown => Action::MoveLength(-STEPS_PER_OCTAVE),
        KeyCode::PageUp => Action::MoveLength(STEPS_PER_OCTAVE),
        KeyCode::Home => Action::LengthEnd(false),
        KeyCode::End => Action::LengthEnd(true),
        KeyCode::Char('t') => Action::LengthTrain,
        KeyCode::Up => vertical(-1),
        KeyCode::Down => vertical(1),
        KeyCode::Char(',') => Action::Head(-1),
        KeyCode::Char('.') => Action::Head(1),
        KeyCode::Char('[') => Action::Layer(-1),
        KeyCode::Char(']') => Action::Layer(1),
        KeyCode::Char('p') => Action::NextPreset,
        KeyCode::Char('*') => Action::ScaleAll(SLOPE_STEP),
        KeyCode::Char('/') => Action::ScaleAll(1.0 / SLOPE_STEP),
        KeyCode::Char('+' | '=') if focus == Focus::Attention => Action::Zoom(true),
        KeyCode::Char('-') if focus == Focus::Attention => Action::Zoom(false),
        KeyCode::Char('+' | '=') => Action::ScaleHead(SLOPE_STEP),
        KeyCode::Char('-') => Action::ScaleHead(1.0 / SLOPE_STEP),
        KeyCode::Char('z') => Action::Zoom(true),
        KeyCode::Char('x') => Action::Zoom(false),
        KeyCode::Char('h') => Action::Pan(-1),
        KeyCode::Char('l') => Action::Pan(1),
        KeyCode::Char('r') => Action::ResetSlopes,
        KeyCode::Char('S') => Action::SaveSlopes,
        KeyCode::Char('L') => Action::LoadSlopes,
        KeyCode::Char('b') => Action::SwapAB,
        KeyCode::Char('e') | KeyCode::Enter => Action::Enlarge,
        KeyCode::Char('a') => Action::ToggleRule,
        KeyCode::Char('m') => Action::ToggleMouse,
        KeyCode::Char('y') => Action::ToggleMetric,
        KeyCode::Char('c') => Action::NextRecipe,
        KeyCode::Char('C') => Action::ClearRecipes,
        KeyCode::Char('v') => Action::NextView,
        KeyCode::Char('w') => Action::Export,
        KeyCode::Char('s') => Action::NextStat,
        KeyCode::Char('d') => Action::TogglePriorDiff,
        KeyCode::Char('g') => Action::Tour(TourMove::Toggle),
        KeyCode::Char('n') => Action::Tour(TourMove::Next),
        KeyCode::Char('N') => Action::Tour(TourMove::Back),
        _ => return None,
    })
}

/// The key table shown by the help overlay and docs/tui.md: (keys, what they do).
pub const KEY_HELP: &[(&str, &str)] = &[
    ("← / →", "move the length cursor (fine: 1/16 octave)"),
    (
        "Shift+← / Shift+→, PgDn / PgUp",
        "move the length cursor by an octave",
    ),
    ("Home / End", "shortest / longest length"),
    ("t", "jump to the training length"),
    (
        "mouse click / drag on the chart",
        "put the length cursor there",
    ),
    ("Tab / Shift+Tab", "focus the next / previous panel"),
    (
        "↑ / ↓",
        "select head (slopes, bias) or move the query row (attention)",
    ),
    (", / .", "previous / next head"),
    ("[ / ]", "previous / next layer (attention heatmap)"),
    (
        "p",
        "next slope preset (geometric, equal, linear, reversed, zero)",
    ),
    ("* / /", "scale every slope by 1.25 / 1/1.25"),
    (
        "+ / -",
        "selected head's slope x1.25 / /1.25 (zoom in / out on the attention panel)",
    ),
    ("r", "reset to the model's own slopes"),
    ("b", "swap current and previous slopes (A/B)"),
    ("S / L", "save / load slopes (JSON file, see --slopes-file)"),
    ("e / Enter", "enlarge the selected head's bias matrix"),
    (
        "v",
        "attention panel view: heatmap, attention by distance, head statistics, loss by position, slope sensitivity, position-encoding family",
    ),
    (
        "↑ / ↓, + / -, h / l (family)",
        "family view, attention panel focused: select a scheme, scale its main parameter x1.25 / /1.25, step its second",
    ),
    (
        "s",
        "head statistics: mean distance, 90% mass distance, normalised entropy, sink mass",
    ),
    (
        "d",
        "head statistics: the statistic, or minus the ALiBi prior's",
    ),
    ("z / x", "zoom the attention heatmap in / out"),
    ("h / l", "pan the zoomed heatmap left / right"),
    ("a", "heatmap downsampling: max or mean per block"),
    (
        "y",
        "chart: token perplexity, bits per byte (comparable across tokenizers), or KL divergence from the original",
    ),
    (
        "c / C",
        "add the next long-context recipe curve (interp:2, interp:dynamic, ntk, window, sinks) / remove them",
    ),
    (
        "m",
        "toggle mouse capture (off lets the terminal select text)",
    ),
    (
        "g",
        "guided tour: open it (or leave it, keeping what you see)",
    ),
    ("n / N", "tour: next / previous step"),
    (
        "?",
        "this help (↑ / ↓, PgUp / PgDn scroll it on a short terminal)",
    ),
    (
        "Esc",
        "close the help, the enlarged view or the tour card; quit when none is open",
    ),
    ("q / Ctrl+C", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn global_keys() {
        assert_eq!(
            map_key(key(KeyCode::Char('q')), Focus::Chart, false),
            Some(Action::Quit)
        );
        assert_eq!(
            map_key(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                Focus::Slopes,
                false
            ),
            Some(Action::Quit)
        );
        assert_eq!(
            map_key(key(KeyCode::Right), Focus::Chart, false),
            Some(Action::MoveLength(1))
        );
        assert_eq!(
            map_key(
                KeyEvent::new(KeyCode::Left, KeyModifiers::SHIFT),
                Focus::Chart,
                false
            ),
            Some(Action::MoveLength(-16))
        );
        assert_eq!(
            map_key(key(KeyCode::PageUp), Focus::Bias, false),
            Some(Action::MoveLength(16))
        );
        assert_eq!(
            map_key(key(KeyCode::Char('?')), Focus::Chart, false),
            Some(Action::ToggleHelp)
        );
        assert_eq!(map_key(key(KeyCode::Char('§')), Focus::Chart, false), None);
    }

    #[test]
    fn y_switches_the_chart_metric_from_any_panel() {
        for focus in Focus::ALL {
            assert_eq!(
                map_key(key(KeyCode::Char('y')), focus, false),
                Some(Action::ToggleMetric)
            );
        }
        assert_eq!(map_key(key(KeyCode::Char('y')), Focus::Chart, true), None);
        assert!(
            KEY_HELP
                .iter()
                .any(|(k, what)| *k == "y" && what.contains("bits per byte"))
        );
    }

    #[test]
    fn context_dependent_keys() {
        assert_eq!(
            map_key(key(KeyCode::Up), Focus::Slopes, false),
            Some(Action::Head(-1))
        );
        assert_eq!(
            map_key(key(KeyCode::Up), Focus::Attention, false),
            Some(Action::Query(-1))
        );
        assert_eq!(
            map_key(key(KeyCode::Char('+')), Focus::Slopes, false),
            Some(Action::ScaleHead(SLOPE_STEP))
        );
        assert_eq!(
            map_key(key(KeyCode::Char('+')), Focus::Attention, false),
            Some(Action::Zoom(true))
        );
    }

    #[test]
    fn help_overlay_swallows_keys() {
        assert_eq!(map_key(key(KeyCode::Right), Focus::Chart, true), None);
        assert_eq!(
            map_key(key(KeyCode::Esc), Focus::Chart, true),
            Some(Action::ToggleHelp)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('q')), Focus::Chart, true),
            Some(Action::Quit)
        );
    }

    #[test]
    fn focus_cycles() {
        assert_eq!(Focus::Chart.step(true), Focus::Slopes);
        assert_eq!(Focus::Chart.step(false), Focus::Attention);
        let mut f = Focus::Chart;
        for _ in 0..4 {
            f = f.step(true);
        }
        assert_eq!(f, Focus::Chart);
    }
}
