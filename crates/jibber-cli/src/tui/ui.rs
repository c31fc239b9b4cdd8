//! Drawing the terminal client.

use jibber_client::realtime::Connection;
use jibber_crypto::PublicKeys;
use jibber_crypto::safety::SafetyNumber;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line as Text, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};

use super::app::{
    App, Field, Focus, LoginForm, Main, Mark, Overlay, SESSION_EXPIRED, Screen, display,
    expire_typing, shown_text,
};

pub fn draw(frame: &mut Frame, app: &mut App) {
    match &mut app.screen {
        Screen::Login(form) => login(frame, form),
        Screen::Main(main) => {
            expire_typing(main);
            main_screen(frame, main)
        }
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn login(frame: &mut Frame, form: &LoginForm) {
    let area = centered(frame.area(), 60, 14);
    let title = if form.signup {
        " Jibber · sign up "
    } else {
        " Jibber · log in "
    };
    frame.render_widget(Block::bordered().title(title), area);
    let inner = area.inner(ratatui::layout::Margin::new(2, 1));
    let row = |label: &str, value: String, field: Field| {
        let focused = form.focus == field;
        let style = if focused {
            Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan)
        } else {
            Style::new()
        };
        let cursor = if focused { "▏" } else { "" };
        Text::from(vec![
            Span::styled(format!("{label:<10}"), style),
            Span::raw(value),
            Span::raw(cursor),
        ])
    };
    let mut lines = vec![
        row("Server", form.server.clone(), Field::Server),
        row("Username", form.username.clone(), Field::Username),
        row(
            "Password",
            "•".repeat(form.password.chars().count()),
            Field::Password,
        ),
        Text::raw(""),
    ];
    if form.busy {
        lines.push(Text::from("Working… (OPAQUE key stretching takes a moment)").italic());
    } else if let Some(e) = &form.error {
        lines.push(Text::from(e.clone()).fg(Color::Red));
        if e != SESSION_EXPIRED {
            lines.push(Text::from("Fix the field and press Enter to try again.").dim());
        }
    } else {
        let action = if form.signup { "sign up" } else { "log in" };
        lines.push(Text::from(format!("Enter: {action} · Tab: next field")).dim());
    }
    let other = if form.signup {
        "Ctrl-N: log in instead"
    } else {
        "Ctrl-N: create an account"
    };
    lines.push(Text::from(format!("{other} · Ctrl-C: quit")).dim());
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn connection_line(c: &Connection) -> Span<'static> {
    match c {
        Connection::Online => Span::styled("● online", Style::new().fg(Color::Green)),
        Connection::Connecting { .. } => {
            Span::styled("◌ connecting…", Style::new().fg(Color::Yellow))
        }
        Connection::Offline { reason, retry_in } => Span::styled(
            format!(
                "○ server unreachable; retrying in {:.0} s · Ctrl-R: retry now ({reason})",
                retry_in.as_secs_f32().ceil()
            ),
            Style::new().fg(Color::Red),
        ),
        // (The login form replaces the screen at once.)
        Connection::SessionExpired => Span::styled(
            "✕ session expired: log in again",
            Style::new().fg(Color::Red),
        ),
    }
}

fn main_screen(frame: &mut Frame, main: &mut Main) {
    let [body, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let [left, right] =
        Layout::horizontal([Constraint::Length(32), Constraint::Min(20)]).areas(body);
    chat_list(frame, main, left);
    conversation(frame, main, right);
    let mut spans = vec![
        Span::raw(format!(" {} ", main.me.username)).bold(),
        connection_line(&main.connection),
    ];
    if let Some(n) = &main.notice {
        spans.push(Span::styled(
            format!("  ⚠ {n}"),
            Style::new().fg(Color::Red),
        ));
    }
    spans.push(Span::raw("  ? help").dim());
    frame.render_widget(Paragraph::new(Text::from(spans)), status);
    match &main.overlay {
        Some(Overlay::NewChat {
            query,
            results,
            selected,
            searched,
        }) => new_chat(frame, query, results, *selected, *searched),
        Some(Overlay::Safety) => safety_view(frame, main),
        Some(Overlay::Help) => help(frame),
        None => {}
    }
}

fn chat_list(frame: &mut Frame, main: &Main, area: Rect) {
    let border = if main.focus == Focus::Chats {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    };
    let block = Block::bordered().title(" Chats ").border_style(border);
    if !main.chats_loaded {
        frame.render_widget(Paragraph::new("Loading chats…").block(block), area);
        return;
    }
    if main.chats.is_empty() {
        frame.render_widget(
            Paragraph::new("No chats yet.\nCtrl-N: start one with a contact.")
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        );
        return;
    }
    let items: Vec<ListItem> = main
        .chats
        .iter()
        .map(|c| {
            let online = main.online.contains(&c.other_user.id);
            let dot = if online {
                Span::styled("● ", Style::new().fg(Color::Green))
            } else {
                Span::styled("○ ", Style::new().dim())
            };
            let mut title = vec![dot, Span::raw(display(&c.other_user)).bold()];
            if c.unread_count > 0 {
                title.push(Span::styled(
                    format!(" ({})", c.unread_count),
                    Style::new().fg(Color::Yellow).bold(),
                ));
            }
            let preview = main
                .lines
                .get(&c.id)
                .and_then(|l| l.last())
                .map(|l| shown_text(&l.text))
                .or_else(|| c.last_message.as_ref().map(|_| "…".to_owned()))
                .unwrap_or_else(|| "no messages yet".to_owned());
            ListItem::new(vec![
                Text::from(title),
                Text::from(format!("  {preview}")).dim(),
            ])
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(main.selected));
    frame.render_stateful_widget(
        List::new(items)
            .block(block)
            .highlight_style(Style::new().bg(Color::DarkGray)),
        area,
        &mut state,
    );
}

fn mark(m: &Mark) -> Span<'static> {
    match m {
        Mark::Incoming => Span::raw(""),
        Mark::Sending => Span::styled(" …", Style::new().dim()),
        Mark::Sent => Span::styled(" ✓", Style::new().dim()),
        Mark::Delivered => Span::raw(" ✓✓"),
        Mark::Read => Span::styled(" ✓✓ read", Style::new().fg(Color::Cyan)),
        Mark::Failed(why) => Span::styled(
            format!(" ✕ not sent ({why}) · Ctrl-R: retry"),
            Style::new().fg(Color::Red),
        ),
    }
}

fn conversation(frame: &mut Frame, main: &Main, area: Rect) {
    let Some(chat) = main.open_chat() else {
        let hint = if main.chats.is_empty() && main.chats_loaded {
            "Start a conversation with Ctrl-N."
        } else {
            "Select a chat and press Enter."
        };
        frame.render_widget(Paragraph::new(hint).block(Block::bordered()), area);
        return;
    };
    let [history, typing, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(3),
    ])
    .areas(area);
    let peer = display(&chat.other_user);
    let mut lines: Vec<Text> = Vec::new();
    for l in main.lines.get(&chat.id).into_iter().flatten() {
        let who = if l.mine {
            Span::styled("me", Style::new().fg(Color::Blue).bold())
        } else {
            Span::styled(peer.clone(), Style::new().fg(Color::Magenta).bold())
        };
        let body = if l.text.is_ok() {
            Span::raw(shown_text(&l.text))
        } else {
            Span::styled(shown_text(&l.text), Style::new().fg(Color::Red).italic())
        };
        lines.push(Text::from(vec![who, Span::raw(": "), body, mark(&l.mark)]));
    }
    if lines.is_empty() {
        lines.push(Text::from("No messages yet: say hello.").dim());
    }
    let height = history.height.saturating_sub(2) as usize;
    let skip = lines.len().saturating_sub(height + main.scroll);
    let shown: Vec<Text> = lines.into_iter().skip(skip).take(height).collect();
    frame.render_widget(
        Paragraph::new(shown)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(format!(" {peer} · Ctrl-K: safety number "))),
        history,
    );
    if main.typing.contains_key(&chat.id) {
        frame.render_widget(
            Paragraph::new(format!(" {peer} is typing…")).italic().dim(),
            typing,
        );
    }
    let border = if main.focus == Focus::Input {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    };
    frame.render_widget(
        Paragraph::new(format!("{}▏", main.input)).block(
            Block::new()
                .borders(Borders::ALL)
                .title(" Message · Enter: send · PgUp: older · Esc: chats ")
                .border_style(border),
        ),
        input,
    );
}

fn new_chat(
    frame: &mut Frame,
    query: &str,
    results: &[jibber_proto::api::PublicUser],
    selected: usize,
    searched: bool,
) {
    let area = centered(frame.area(), 50, 16);
    frame.render_widget(Clear, area);
    let [q, list] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(format!("{query}▏")).block(Block::bordered().title(" New chat: search ")),
        q,
    );
    if searched && results.is_empty() {
        let text = if query.is_empty() {
            "No other users yet. Invite someone to sign up. Ctrl-R: search again"
        } else {
            "Nobody matches. Ctrl-R: search again"
        };
        frame.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(Block::bordered()),
            list,
        );
        return;
    }
    let items: Vec<ListItem> = results
        .iter()
        .map(|u| ListItem::new(format!("{} (@{})", display(u), u.username)))
        .collect();
    let mut state = ListState::default().with_selected(Some(selected));
    frame.render_stateful_widget(
        List::new(items)
            .block(Block::bordered().title(" Enter: start · Esc: cancel "))
            .highlight_style(Style::new().bg(Color::DarkGray)),
        list,
        &mut state,
    );
}

fn safety_view(frame: &mut Frame, main: &Main) {
    let area = centered(frame.area(), 64, 12);
    frame.render_widget(Clear, area);
    let Some(chat) = main.open_chat() else { return };
    let keys = |id: &jibber_proto::B64, signing: &jibber_proto::B64| {
        PublicKeys::from_bytes(id.as_bytes(), signing.as_bytes())
    };
    let number = keys(&main.me.public_id_key, &main.me.public_signing_key).and_then(|mine| {
        let theirs = keys(
            &chat.other_user.public_id_key,
            &chat.other_user.public_signing_key,
        )?;
        Ok(SafetyNumber::new(
            (&main.me.id, &mine),
            (&chat.other_user.id, &theirs),
        ))
    });
    let text = match number {
        Ok(n) => vec![
            Text::from(format!("Safety number with {}:", display(&chat.other_user))),
            Text::raw(""),
            Text::from(n.groups().join(" ")).bold(),
            Text::raw(""),
            Text::from("Compare it with theirs in person or on a call; if it").dim(),
            Text::from("differs, someone may be in the middle. Esc: close").dim(),
        ],
        Err(e) => vec![Text::from(format!("⚠ cannot compute: {e}")).fg(Color::Red)],
    };
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Safety number ")),
        area,
    );
}

fn help(frame: &mut Frame) {
    let area = centered(frame.area(), 56, 14);
    frame.render_widget(Clear, area);
    let text = [
        "↑/↓ or j/k   choose a chat",
        "Enter        open the chat / send",
        "Tab          chats ↔ message box",
        "Ctrl-N       new chat (search contacts)",
        "Ctrl-K       safety number of the open chat",
        "Ctrl-R       reconnect now / retry failed / reload",
        "PgUp/PgDn    scroll history (loads older)",
        "q / Ctrl-C   quit",
    ];
    frame.render_widget(
        Paragraph::new(text.map(Text::from).to_vec())
            .block(Block::bordered().title(" Keys · Esc: close ")),
        area,
    );
}
