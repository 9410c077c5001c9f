//! The dashboard as HTML. The server renders everything: the page works
//! without JavaScript (and in text browsers); a few lines of script fetch
//! [`fragment`] every [`REFRESH_SECS`] and swap it in, so the page stays
//! live without a reload. Every state is written as a word and a mark
//! (⚠ problem, ↻ busy, … waiting, ✓ fine), so nothing depends on colour;
//! on a narrow screen the tables become one card per row.

use std::fmt::Write as _;

use crate::view::{Attention, ChannelView, FleetView, LockView, NodeView, Presence};
use crate::when;

/// Seconds between the page's refreshes.
pub const REFRESH_SECS: u32 = 2;

const STYLE: &str = r#"
:root { color-scheme: light dark; --line: #8884; --muted: #777; }
body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; padding: 0 12px 24px; max-width: 1400px; }
header { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: baseline; padding: 10px 0; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.3em; margin: 0; }
h2 { font-size: 1.1em; margin: 20px 0 6px; }
.muted, .when { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .id { font-family: ui-monospace, monospace; font-size: 0.9em; }
td.host { white-space: nowrap; }
.mark { font-weight: 700; }
tr.problem td.why { font-weight: 600; }
tr.problem .mark { color: #c33; } tr.busy .mark { color: #36c; } tr.fine .mark { color: #393; }
.problems { border: 2px solid #c33; padding: 6px 10px; margin-top: 12px; }
#stale { display: none; border: 2px dashed var(--muted); padding: 4px 10px; margin-top: 8px; }
body.offline #stale { display: block; }
@media (max-width: 700px) {
  table, tbody, tr, td { display: block; width: auto; }
  thead { display: none; }
  tr { border: 1px solid var(--line); margin: 8px 0; padding: 4px 0; }
  td { border: 0; padding: 2px 8px; }
  td::before { content: attr(data-label) ": "; color: var(--muted); }
  td.num { text-align: left; }
}
"#;

const SCRIPT: &str = r#"
(function () {
  var main = document.getElementById('fleet');
  var refreshes = 0;
  function refresh() {
    fetch('fragment', { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.text();
    }).then(function (html) {
      main.innerHTML = html;
      refreshes += 1;
      document.body.dataset.refreshes = refreshes;
      document.body.classList.remove('offline');
    }).catch(function () {
      document.body.classList.add('offline');
    });
  }
  setInterval(refresh, REFRESH_MS);
})();
"#;

/// HTML-escapes text.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(v: &FleetView) -> String {
    let mut out = String::with_capacity(4096 + 600 * v.nodes.len());
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Tandem fleet</title><style>{STYLE}</style>\
         <noscript><meta http-equiv=\"refresh\" content=\"{}\"></noscript></head>\
         <body><div id=\"stale\" role=\"status\">Connection to the dashboard lost: \
         showing the last state, retrying.</div><main id=\"fleet\">",
        REFRESH_SECS * 5
    );
    out.push_str(&fragment(v));
    let _ = writeln!(
        out,
        "</main><script>{}</script></body></html>",
        SCRIPT.replace("REFRESH_MS", &(REFRESH_SECS * 1000).to_string())
    );
    out
}

/// The part that refreshes: everything inside `<main>`.
pub fn fragment(v: &FleetView) -> String {
    let mut out = String::with_capacity(2048 + 600 * v.nodes.len());
    let problems = v
        .nodes
        .iter()
        .filter(|n| n.attention == Attention::Problem)
        .count();
    let _ = write!(
        out,
        "<header><h1>Tandem fleet</h1><span>{} nodes, {problems} need attention</span>\
         <span class=\"when\">as of {} (read-only)</span></header>",
        v.nodes.len(),
        esc(&tandem_contract::time::format_unix(v.now)),
    );
    if !v.problems.is_empty() {
        out.push_str("<div class=\"problems\" role=\"alert\"><strong>⚠ Not everything could be read:</strong><ul>");
        for p in &v.problems {
            let _ = write!(out, "<li>{}</li>", esc(p));
        }
        out.push_str("</ul></div>");
    }
    channels(&mut out, v);
    locks(&mut out, v);
    failed(&mut out, v);
    nodes(&mut out, v);
    out
}

fn channels(out: &mut String, v: &FleetView) {
    out.push_str("<section id=\"channels\"><h2>Channels</h2>");
    if v.channels.is_empty() {
        out.push_str("<p class=\"muted\">No channels: give the dashboard a repository (--repo).</p></section>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Channel</th><th>Version</th><th>Rollout</th><th>Nodes</th>\
         <th>Eligible</th><th>Downloading</th><th>Installed</th><th>Rebooted</th>\
         <th>Confirmed</th><th>Rolled back</th></tr></thead><tbody>",
    );
    for c in &v.channels {
        channel_row(out, c);
    }
    out.push_str("</tbody></table></section>");
}

fn channel_row(out: &mut String, c: &ChannelView) {
    let version = match (&c.version, &c.problem) {
        (Some(v), _) => {
            let sig = match c.verified {
                Some(true) => " <span class=\"muted\">(signature verified)</span>",
                Some(false) => " <strong>⚠ signature NOT verified</strong>",
                None => "",
            };
            format!("{}{sig}", esc(&v.to_string()))
        }
        (None, Some(p)) => format!("<strong>⚠ unreadable:</strong> {}", esc(p)),
        (None, None) => "?".into(),
    };
    let p = &c.phases;
    let _ = write!(
        out,
        "<tr data-channel=\"{img}/{ch}\"><td data-label=\"Channel\">{img}/<strong>{ch}</strong></td>\
         <td data-label=\"Version\">{version}</td><td data-label=\"Rollout\">{}{}</td>",
        esc(&c.schedule),
        c.stopped
            .as_ref()
            .map(|s| format!("<br><strong>⚠ {}</strong>", esc(s)))
            .unwrap_or_default(),
        img = esc(&c.image),
        ch = esc(&c.channel),
    );
    for (label, n) in [
        ("Nodes", p.nodes),
        ("Eligible", p.eligible),
        ("Downloading", p.downloading),
        ("Installed", p.installed),
        ("Rebooted", p.rebooted),
        ("Confirmed", p.confirmed),
        ("Rolled back", p.rolled_back),
    ] {
        let _ = write!(out, "<td class=\"num\" data-label=\"{label}\">{n}</td>");
    }
    out.push_str("</tr>");
}

fn locks(out: &mut String, v: &FleetView) {
    out.push_str("<section id=\"locks\"><h2>Reboot locks</h2>");
    if v.locks.is_empty() {
        out.push_str("<p class=\"muted\">No reboot group in use.</p></section>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Group</th><th>Held</th><th>Holders</th><th>Waiting</th></tr></thead><tbody>",
    );
    for l in &v.locks {
        lock_row(out, l, v.now);
    }
    out.push_str("</tbody></table></section>");
}

fn lock_row(out: &mut String, l: &LockView, now: u64) {
    let held = match (&l.problem, l.max) {
        (Some(p), _) => format!("⚠ unreadable: {}", esc(p)),
        (None, Some(max)) => format!("{} of {max}", l.holders.len()),
        (None, None) => "?".into(),
    };
    let holders = if l.holders.is_empty() {
        "nobody".to_string()
    } else {
        l.holders
            .iter()
            .map(|h| match h.since {
                Some(t) => format!(
                    "{} since {} ({})",
                    esc(&h.name()),
                    when::at(t, now),
                    when::age(now.saturating_sub(t))
                ),
                None => esc(&h.name()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let waiting = match l.longest_wait_secs {
        Some(w) => format!("{} (longest {})", esc(&l.waiting.join(", ")), when::age(w)),
        None => "none".into(),
    };
    let _ = write!(
        out,
        "<tr data-group=\"{g}\"><td data-label=\"Group\">{g}</td><td data-label=\"Held\">{held}</td>\
         <td data-label=\"Holders\">{holders}</td><td data-label=\"Waiting\">{waiting}</td></tr>",
        g = esc(&l.group),
    );
}

fn failed(out: &mut String, v: &FleetView) {
    out.push_str("<section id=\"failed\"><h2>Failed versions</h2>");
    if v.failed.is_empty() {
        out.push_str("<p class=\"muted\">None recorded.</p></section>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Version</th><th>Failed on</th><th>When</th><th>Why</th></tr></thead><tbody>",
    );
    for f in &v.failed {
        let _ = write!(
            out,
            "<tr data-version=\"{ver}\"><td data-label=\"Version\"><strong>⚠ {ver}</strong></td>\
             <td data-label=\"Failed on\">{}</td><td data-label=\"When\">{}</td><td data-label=\"Why\">{}</td></tr>",
            esc(if f.hostname.is_empty() {
                &f.machine_id
            } else {
                &f.hostname
            }),
            when::at(f.at, v.now),
            esc(&f.reason),
            ver = esc(&f.version.to_string()),
        );
    }
    out.push_str(
        "</tbody></table><p class=\"muted\">No node installs these. \
         <code>tandem cluster forget-failed &lt;version&gt; --etcd …</code> allows one again.</p></section>",
    );
}

fn nodes(out: &mut String, v: &FleetView) {
    out.push_str("<section id=\"nodes\"><h2>Nodes</h2>");
    if v.nodes.is_empty() {
        out.push_str("<p class=\"muted\">No node records in etcd (nodes write one when their agent has etcd configured).</p></section>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th></th><th>Host</th><th>Machine id</th><th>Version</th><th>Slot</th>\
         <th>State</th><th>Lock</th><th>Last seen</th><th>Why</th></tr></thead><tbody>",
    );
    for n in &v.nodes {
        node_row(out, n, v.now);
    }
    out.push_str("</tbody></table></section>");
}

fn node_row(out: &mut String, n: &NodeView, now: u64) {
    let opt = |o: Option<String>| o.unwrap_or_else(|| "?".into());
    let state = format!(
        "{} / {}",
        opt(n.update_state.map(|s| s.to_string())),
        opt(n.agent_state.map(|s| s.to_string()))
    );
    let lock = match (n.lock, n.lock_since) {
        (true, Some(t)) => format!("held since {}", when::at(t, now)),
        (true, None) => "held".into(),
        (false, _) => "–".into(),
    };
    let seen = match n.presence {
        Presence::Live => format!("{} ago", when::age(now.saturating_sub(n.last_seen))),
        Presence::Stale { age_secs } | Presence::Gone { age_secs } => {
            format!("⚠ {} ago", when::age(age_secs))
        }
    };
    let _ = write!(
        out,
        "<tr class=\"{word}\" data-machine-id=\"{id}\" data-version=\"{ver}\" data-phase=\"{phase}\">\
         <td data-label=\"{word}\"><span class=\"mark\" title=\"{word}\">{mark}</span></td>\
         <td data-label=\"Host\" class=\"host\"><strong>{host}</strong></td>\
         <td data-label=\"Machine id\" class=\"id\" title=\"{id}\">{short}</td>\
         <td data-label=\"Version\" class=\"version\">{ver}</td><td data-label=\"Slot\">{slot}</td>\
         <td data-label=\"State\">{state}</td><td data-label=\"Lock\">{lock}</td>\
         <td data-label=\"Last seen\">{seen}</td><td data-label=\"Why\" class=\"why\">{why}</td></tr>",
        word = n.attention.word(),
        mark = n.attention.mark(),
        id = esc(&n.machine_id),
        short = esc(&short_id(&n.machine_id)),
        ver = esc(&opt(n.version.as_ref().map(ToString::to_string))),
        phase = serde_json::to_value(n.phase)
            .ok()
            .and_then(|p| p.as_str().map(str::to_string))
            .unwrap_or_default(),
        host = esc(&n.hostname),
        slot = esc(&opt(n.slot.map(|s| s.to_string()))),
        state = esc(&state),
        why = esc(&n.reason),
    );
}

/// The first 12 characters of a machine id (the page's column; the
/// whole id is the cell's title).
fn short_id(id: &str) -> String {
    match id.char_indices().nth(12) {
        Some((at, _)) => format!("{}…", &id[..at]),
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn machine_ids_are_shortened() {
        assert_eq!(short_id("0123456789abcdef0123"), "0123456789ab…");
        assert_eq!(short_id("short"), "short");
    }
}
