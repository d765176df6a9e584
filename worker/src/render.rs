//! Email content: subject, plain text and HTML from per-type templates (minijinja), with a good
//! default for every type and a digest template. HTML templates are auto-escaped, so a title or
//! message can never inject markup. Links are resolved against the public URL.

use minijinja::{Environment, context};
use serde::Serialize;
use std::path::Path;

/// What an email says about one notification.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    #[serde(rename = "type")]
    pub kind: String,
    pub priority: String,
    pub title: String,
    pub message: String,
    pub triggered_by_name: Option<String>,
    /// `action_url` resolved against the public URL.
    pub link: Option<String>,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct Renderer {
    env: Environment<'static>,
    public_url: String,
}

/// `action_url` as a full link: absolute http(s) URLs as they are, paths on the public URL.
/// Characters that could end an HTML attribute are percent-encoded, so templates may place the
/// link in `href` unescaped.
pub fn link(public_url: &str, action_url: Option<&str>) -> Option<String> {
    let url = action_url?;
    let full = if url.starts_with("https://") || url.starts_with("http://") {
        url.to_owned()
    } else if url.starts_with('/') && !url.starts_with("//") {
        format!("{}{url}", public_url.trim_end_matches('/'))
    } else {
        return None;
    };
    let mut safe = String::with_capacity(full.len());
    for c in full.chars() {
        match c {
            '"' => safe.push_str("%22"),
            '\'' => safe.push_str("%27"),
            '<' => safe.push_str("%3C"),
            '>' => safe.push_str("%3E"),
            '`' => safe.push_str("%60"),
            c if c.is_whitespace() || c.is_control() => {
                safe.push_str(&format!("%{:02X}", c as u32 & 0xff))
            }
            c => safe.push(c),
        }
    }
    Some(safe)
}

/// A subject line: every line break or other control character (a title may hold them; a
/// per-type template may add them) becomes a space, so the header stays one logical line; runs
/// of spaces become one (lettre's encoding of a non-ASCII subject loses a run of spaces between
/// two non-ASCII words: decoders drop the whitespace between two encoded words).
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A body part with every line ending as LF, which lettre writes as CRLF. lettre turns a bare
/// LF into CRLF but leaves a bare CR (a title or message may hold one) as it is, and a bare CR
/// in an SMTP message is malformed: some servers refuse it, others read it as a line end.
fn line_ends(s: String) -> String {
    if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s
    }
}

impl Renderer {
    /// The built-in templates, plus `<type>.subject|txt|html` files from `dir` when given.
    pub fn new(dir: Option<&Path>, public_url: &str) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.add_template(
            "default.subject",
            include_str!("../templates/default.subject"),
        )?;
        env.add_template("default.txt", include_str!("../templates/default.txt"))?;
        env.add_template("default.html", include_str!("../templates/default.html"))?;
        env.add_template("digest.txt", include_str!("../templates/digest.txt"))?;
        env.add_template("digest.html", include_str!("../templates/digest.html"))?;
        if let Some(dir) = dir {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned)
                else {
                    continue;
                };
                if name.ends_with(".subject") || name.ends_with(".txt") || name.ends_with(".html") {
                    env.add_template_owned(name, std::fs::read_to_string(&path)?)?;
                }
            }
        }
        Ok(Self {
            env,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn preferences_url(&self) -> String {
        format!("{}/#preferences", self.public_url)
    }

    fn pick(&self, kind: &str, ext: &str) -> String {
        let own = format!("{kind}.{ext}");
        if self.env.get_template(&own).is_ok() {
            own
        } else {
            format!("default.{ext}")
        }
    }

    /// One notification's email.
    pub fn single(&self, item: &Item) -> anyhow::Result<Rendered> {
        let ctx = context! {
            type => &item.kind, priority => &item.priority, title => &item.title,
            message => &item.message, triggered_by_name => &item.triggered_by_name,
            link => &item.link, preferences_url => self.preferences_url(),
        };
        let render = |ext: &str| {
            self.env
                .get_template(&self.pick(&item.kind, ext))?
                .render(&ctx)
        };
        Ok(Rendered {
            subject: one_line(&render("subject")?),
            text: line_ends(render("txt")?),
            html: line_ends(render("html")?),
        })
    }

    /// One message gathering several notifications.
    pub fn digest(&self, items: &[Item]) -> anyhow::Result<Rendered> {
        let ctx = context! { items => items, preferences_url => self.preferences_url() };
        Ok(Rendered {
            subject: format!("{} new notifications", items.len()),
            text: line_ends(self.env.get_template("digest.txt")?.render(&ctx)?),
            html: line_ends(self.env.get_template("digest.html")?.render(&ctx)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        Item {
            kind: "goal_assigned".into(),
            priority: "high".into(),
            title: "New <Goal>".into(),
            message: "John assigned you a goal".into(),
            triggered_by_name: Some("John Doe".into()),
            link: link("http://h.example/", Some("/goals/1")),
        }
    }

    #[test]
    fn the_default_template_has_every_part_and_escapes_html() {
        let r = Renderer::new(None, "http://h.example")
            .unwrap()
            .single(&item())
            .unwrap();
        assert_eq!(r.subject, "New <Goal>");
        assert!(
            r.text.contains("John assigned you a goal")
                && r.text.contains("http://h.example/goals/1")
        );
        assert!(r.html.contains("New &lt;Goal&gt;"), "escaped in HTML");
        assert!(r.html.contains(r#"href="http://h.example/goals/1""#));
        assert!(r.text.contains("http://h.example/#preferences"));
    }

    #[test]
    fn a_per_type_template_replaces_the_default_for_that_type_only() {
        let dir = std::env::temp_dir().join(format!("herald-tpl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("goal_assigned.subject"), "Goal: {{ title }}").unwrap();
        let r = Renderer::new(Some(&dir), "http://h.example").unwrap();
        assert_eq!(r.single(&item()).unwrap().subject, "Goal: New <Goal>");
        let mut other = item();
        other.kind = "review_due_soon".into();
        assert_eq!(r.single(&other).unwrap().subject, "New <Goal>");
    }

    #[test]
    fn the_subject_is_one_line_whatever_the_title_holds() {
        let mut i = item();
        i.title = " Hello\r\nBcc: x@evil.test\u{7}\tthere\u{2028} ".into();
        let r = Renderer::new(None, "http://h").unwrap().single(&i).unwrap();
        assert_eq!(r.subject, "Hello Bcc: x@evil.test there");
        assert!(!r.text.contains('\r') && !r.html.contains('\r'));
        assert!(r.text.contains("Hello\nBcc"), "{}", r.text);
    }

    #[test]
    fn links_resolve_paths_and_keep_absolute_urls() {
        assert_eq!(link("http://h/", Some("/a")), Some("http://h/a".into()));
        assert_eq!(
            link("http://h", Some("https://x.example/b")),
            Some("https://x.example/b".into())
        );
        assert_eq!(link("http://h", None), None);
        assert_eq!(
            link("http://h", Some("/a\"><script>")),
            Some("http://h/a%22%3E%3Cscript%3E".into())
        );
    }
}
