//! The page: HTML rendered from the configuration and the registry (nothing a user
//! typed: the tokens are filled in by the script, as text), its stylesheet and script.

use std::fmt::Write as _;

use time::Duration;

use super::{PageOptions, json::WILDCARD_DESCRIPTION};
use crate::{
    lifecycle::DEFAULT_LIFETIME,
    scope::{Scope, ScopeRegistry},
};

pub(crate) const STYLESHEET: &str = include_str!("assets/page.css");
pub(crate) const SCRIPT: &str = include_str!("assets/page.js");

/// The page's policy: its own stylesheet, script and API, and nothing else; no inline
/// script or style, DOM sinks that parse HTML refused (Trusted Types), no framing.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; \
frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The expiry choices the page offers, and the bound the API enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expiry {
    /// The longest lifetime, in whole days.
    pub(crate) max_days: u32,
    /// 30, 90 and 365 days where they fit, and the maximum itself.
    pub(crate) choices: Vec<u32>,
    /// The choice selected at first: the facade's default lifetime, or the longest choice
    /// below it.
    pub(crate) selected: Option<u32>,
}

impl Expiry {
    /// From the facade's lifetimes: its maximum if set, else a year or the default
    /// lifetime, whichever is longer.
    pub(crate) fn new(default: Duration, max: Option<Duration>) -> Self {
        let max = max.unwrap_or(DEFAULT_LIFETIME.max(default));
        let max_days = u32::try_from(max.whole_days().max(0)).unwrap_or(u32::MAX);
        let mut choices: Vec<u32> = [30, 90, 365]
            .into_iter()
            .filter(|d| *d <= max_days)
            .collect();
        if max_days > 0 && !choices.contains(&max_days) {
            choices.push(max_days);
        }
        let default_days = default.whole_days();
        let selected = choices
            .iter()
            .rev()
            .find(|d| i64::from(**d) <= default_days)
            .or(choices.first())
            .copied();
        Self {
            max_days,
            choices,
            selected,
        }
    }
}

/// `&`, `<`, `>`, `"` and `'` as character references: safe in text and in quoted
/// attribute values.
pub(crate) fn escape(s: &str) -> String {
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

fn head(out: &mut String, title: &str, prefix: &str, script: bool) {
    let version = env!("CARGO_PKG_VERSION");
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"referrer\" content=\"no-referrer\">\n<title>{title}</title>\n\
<link rel=\"stylesheet\" href=\"{prefix}/page.css?v={version}\">\n",
        title = escape(title),
        prefix = escape(prefix),
    );
    if script {
        let _ = writeln!(
            out,
            "<script src=\"{prefix}/page.js?v={version}\" defer></script>",
            prefix = escape(prefix)
        );
    }
    out.push_str("</head>\n");
}

fn links<U>(out: &mut String, options: &PageOptions<U>) {
    if options.links.is_empty() {
        return;
    }
    out.push_str("<nav class=\"tp-nav\">");
    for (label, href) in &options.links {
        let _ = write!(out, "<a href=\"{}\">{}</a>", escape(href), escape(label));
    }
    out.push_str("</nav>\n");
}

/// The page for a signed-in user.
pub(crate) fn render<U>(
    options: &PageOptions<U>,
    registry: &ScopeRegistry,
    grantable: &[Scope],
    expiry: &Expiry,
) -> String {
    let prefix = options.prefix();
    let mut out = String::with_capacity(8 * 1024);
    head(&mut out, &options.title, prefix, true);
    let _ = write!(
        out,
        "<body>\n<main class=\"tp\" id=\"tp\" data-api=\"{api}\" data-example-url=\"{example}\" \
data-sign-in-url=\"{sign_in}\" data-expiry-warning=\"{warning}\">\n",
        api = escape(prefix),
        warning = options.expiry_warning.whole_seconds(),
        example = escape(options.example_url.as_deref().unwrap_or_default()),
        sign_in = escape(options.sign_in_url.as_deref().unwrap_or_default()),
    );
    links(&mut out, options);
    let _ = write!(
        out,
        "<header class=\"tp-header\">\n<h1>{title}</h1>\n<p class=\"tp-lead\">Personal access \
tokens let scripts and tools call the API as you, limited to the scopes you choose. Treat them \
like passwords.</p>\n</header>\n",
        title = escape(&options.title),
    );
    out.push_str(
        "<p class=\"tp-notice\" id=\"tp-notice\" role=\"status\" hidden></p>\n\
<section class=\"tp-card tp-reveal\" id=\"tp-reveal\" aria-labelledby=\"tp-reveal-title\" hidden>\n\
<h2 id=\"tp-reveal-title\">Your new token</h2>\n\
<p class=\"tp-warn\"><strong>Copy it now.</strong> It will not be shown again: only a hash of it is kept.</p>\n\
<div class=\"tp-secret\"><code id=\"tp-secret\" class=\"tp-secret-value\" tabindex=\"0\" \
aria-label=\"Your new token\"></code>\
<button type=\"button\" class=\"tp-button\" id=\"tp-copy\">Copy</button></div>\n\
<div class=\"tp-try\" id=\"tp-try\" hidden><p>Try it:</p><div class=\"tp-secret\">\
<pre class=\"tp-mono tp-secret-value\" id=\"tp-curl\" tabindex=\"0\"></pre>\
<button type=\"button\" class=\"tp-button\" id=\"tp-copy-curl\">Copy</button></div></div>\n\
<p><button type=\"button\" class=\"tp-button tp-quiet\" id=\"tp-done\">I have stored it</button></p>\n\
</section>\n",
    );

    out.push_str(
        "<section class=\"tp-card\" aria-labelledby=\"tp-create-title\">\n\
<h2 id=\"tp-create-title\">Generate new token</h2>\n\
<form id=\"tp-create\" class=\"tp-form\" novalidate>\n",
    );
    let _ = writeln!(
        out,
        "<label class=\"tp-field\"><span class=\"tp-label\">Name</span>\
<input id=\"tp-name\" name=\"name\" type=\"text\" maxlength=\"{max}\" required \
autocomplete=\"off\" placeholder=\"What is this token for?\"></label>",
        max = crate::lifecycle::MAX_NAME_LEN,
    );
    out.push_str(
        "<fieldset class=\"tp-field tp-scopes\"><legend class=\"tp-label\">Scopes</legend>\n\
<div class=\"tp-scope-list\">\n",
    );
    let mut any_scope = false;
    for scope in grantable {
        any_scope = true;
        let description = registry
            .description(scope.as_str())
            .unwrap_or(WILDCARD_DESCRIPTION);
        let checked = if registry.defaults().contains(scope.as_str()) {
            " checked"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<label class=\"tp-scope\"><input type=\"checkbox\" name=\"scopes\" value=\"{id}\"{checked}>\
<span class=\"tp-scope-text\"><code>{id}</code><span class=\"tp-scope-desc\">{description}</span></span></label>",
            id = escape(scope.as_str()),
            description = escape(description),
        );
    }
    if !any_scope {
        out.push_str("<p class=\"tp-muted\">There are no scopes you can grant a token.</p>\n");
    }
    out.push_str("</div>\n</fieldset>\n");
    out.push_str(
        "<label class=\"tp-field\"><span class=\"tp-label\">Expiration</span>\
<span class=\"tp-expiry\"><select id=\"tp-expiry\" name=\"expires_in_days\">",
    );
    if expiry.choices.is_empty() {
        out.push_str("<option value=\"\">The default lifetime</option>");
    }
    for days in &expiry.choices {
        let selected = if Some(*days) == expiry.selected {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{days}\"{selected}>{days} days</option>"
        );
    }
    out.push_str(
        "</select><span class=\"tp-muted\" id=\"tp-expiry-date\"></span></span></label>\n\
<div class=\"tp-errors\" id=\"tp-errors\" role=\"alert\" hidden></div>\n\
<p><button type=\"submit\" class=\"tp-button tp-primary\" id=\"tp-generate\">Generate token</button></p>\n\
</form>\n</section>\n",
    );

    out.push_str(
        "<section class=\"tp-card\" aria-labelledby=\"tp-list-title\">\n\
<div class=\"tp-row\"><h2 id=\"tp-list-title\">Your tokens</h2>\
<button type=\"button\" class=\"tp-button tp-danger-quiet\" id=\"tp-revoke-all\" hidden>Revoke all</button></div>\n\
<div class=\"tp-confirm\" id=\"tp-confirm-all\" role=\"alertdialog\" aria-labelledby=\"tp-confirm-all-text\" hidden>\
<p id=\"tp-confirm-all-text\">Revoke all your tokens? Every script and tool using one stops working at once.</p>\
<p><button type=\"button\" class=\"tp-button tp-danger\" id=\"tp-confirm-all-yes\">Revoke all</button> \
<button type=\"button\" class=\"tp-button tp-quiet\" id=\"tp-confirm-all-no\">Cancel</button></p></div>\n\
<p class=\"tp-muted\" id=\"tp-loading\">Loading…</p>\n\
<p class=\"tp-muted\" id=\"tp-empty\" hidden>You have no tokens yet.</p>\n\
<table class=\"tp-table\" id=\"tp-table\" hidden>\n<thead><tr><th scope=\"col\">Name</th>\
<th scope=\"col\">Scopes</th><th scope=\"col\">Created</th><th scope=\"col\">Last used</th>\
<th scope=\"col\">Expires</th><th scope=\"col\">Status</th><th scope=\"col\"><span class=\"tp-sr\">Actions</span></th></tr></thead>\n\
<tbody id=\"tp-tokens\"></tbody>\n</table>\n\
<p class=\"tp-more\"><button type=\"button\" class=\"tp-button tp-quiet\" id=\"tp-more\" hidden>Load more</button></p>\n\
</section>\n</main>\n</body>\n</html>\n",
    );
    out
}

/// What a browser nobody is signed in on gets when there is no sign-in URL to send it to.
pub(crate) fn signed_out<U>(options: &PageOptions<U>) -> String {
    let mut out = String::with_capacity(1024);
    head(&mut out, &options.title, options.prefix(), false);
    out.push_str("<body>\n<main class=\"tp\">\n");
    links(&mut out, options);
    let _ = write!(
        out,
        "<section class=\"tp-card\"><h1>{}</h1><p>Sign in to manage your tokens.</p></section>\n\
</main>\n</body>\n</html>\n",
        escape(&options.title)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn expiry_choices_never_pass_the_maximum() {
        let e = Expiry::new(Duration::days(365), None);
        assert_eq!(
            (e.max_days, e.choices.as_slice(), e.selected),
            (365, &[30, 90, 365][..], Some(365))
        );

        let e = Expiry::new(Duration::days(60), Some(Duration::days(60)));
        assert_eq!(
            (e.max_days, e.choices.as_slice(), e.selected),
            (60, &[30, 60][..], Some(60))
        );

        let e = Expiry::new(Duration::days(90), Some(Duration::days(730)));
        assert_eq!(
            (e.choices.as_slice(), e.selected),
            (&[30, 90, 365, 730][..], Some(90))
        );

        let e = Expiry::new(Duration::days(45), Some(Duration::days(100)));
        assert_eq!(
            (e.choices.as_slice(), e.selected),
            (&[30, 90, 100][..], Some(30))
        );

        let e = Expiry::new(Duration::hours(2), Some(Duration::hours(12)));
        assert_eq!((e.max_days, e.choices.len(), e.selected), (0, 0, None));
    }
}
