//! The normalised summary of a delivery that every accepted webhook publishes (to its hook's
//! topic and to `$deliveries`): provider, event, repository, ref, sender, head commit, delivery
//! id — the same shape whichever forge sent it, so a dashboard needs one renderer.

use crate::hooks::json::Node;
use serde_json::{json, Map, Value};

fn s(v: Node<'_>, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = match p.parse::<usize>() {
            Ok(i) => cur.at(i)?,
            Err(_) => cur.get(p)?,
        };
    }
    if let Some(s) = cur.as_str() {
        return Some(s.into_owned());
    }
    if cur.is_object() || cur.is_array() {
        return None; // not parsed just to be turned down
    }
    match cur.to_value().as_ref() {
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn first(v: Node<'_>, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|p| s(v, p))
}

/// What a dashboard needs to show one delivery.
pub struct Facts<'a> {
    /// Hook id.
    pub hook: &'a str,
    /// Provider name (`github`, …), or none for adnanh-style hooks.
    pub provider: Option<&'a str>,
    /// Event name from the provider's headers or body.
    pub event: Option<&'a str>,
    /// Delivery id.
    pub delivery: Option<&'a str>,
    /// The client address.
    pub source: &'a str,
}

/// Builds the summary object from the payload.
pub fn summarize(f: &Facts<'_>, payload: Node<'_>) -> Value {
    let p = payload;
    let repo = first(
        p,
        &[
            &["repository", "full_name"],
            &["project", "path_with_namespace"],
            &["repository", "path_with_namespace"],
            &["repository", "name"],
        ],
    );
    let git_ref = first(p, &[&["ref"], &["push", "changes", "0", "new", "name"], &["object_attributes", "ref"]]);
    let branch = git_ref.as_deref().and_then(|r| r.strip_prefix("refs/heads/").or(Some(r))).map(str::to_string);
    let sender = first(
        p,
        &[
            &["sender", "login"],
            &["sender", "username"],
            &["user_username"],
            &["user", "username"],
            &["actor", "display_name"],
            &["actor", "nickname"],
            &["pusher", "name"],
        ],
    );
    let mut commit = Map::new();
    let head = p.get("head_commit").filter(|c| c.is_object()).or_else(|| {
        // GitLab sends commits oldest first; the head is the one matching checkout_sha or the last.
        let commits = p.get("commits").filter(|c| c.is_array())?.items();
        let sha = p.get("checkout_sha").and_then(Node::as_str);
        commits
            .iter()
            .copied()
            .find(|c| sha.is_some() && c.get("id").and_then(Node::as_str) == sha)
            .or(commits.last().copied())
    });
    if let Some(h) = head {
        for (k, path) in
            [("id", &["id"][..]), ("message", &["message"]), ("url", &["url"]), ("author", &["author", "name"])]
        {
            if let Some(v) = s(h, path) {
                commit.insert(k.into(), Value::String(v));
            }
        }
    }
    let mut out = json!({
        "hook": f.hook,
        "provider": f.provider,
        "event": f.event,
        "delivery": f.delivery,
        "source": f.source,
        "repo": repo,
        "ref": git_ref,
        "branch": branch,
        "sender": sender,
        "head_commit": if commit.is_empty() { Value::Null } else { Value::Object(commit) },
        "action": s(p, &["action"]),
    });
    if f.provider == Some("stripe") {
        out["object"] = json!({ "id": s(p, &["data", "object", "id"]), "type": s(p, &["data", "object", "object"]) });
    }
    if let Value::Object(m) = &mut out {
        m.retain(|_, v| !v.is_null());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary of `p`, which must be the same read from a parsed value and from JSON text.
    fn sum(f: &Facts<'_>, p: &Value) -> Value {
        let text = serde_json::to_vec(p).unwrap();
        let got = summarize(f, Node::Parsed(p));
        assert_eq!(got, summarize(f, Node::Text(&text)), "parsed and lazy summaries differ");
        got
    }

    fn facts(provider: &'static str) -> Facts<'static> {
        Facts {
            hook: "deploy",
            provider: Some(provider),
            event: Some("push"),
            delivery: Some("d-1"),
            source: "203.0.113.9",
        }
    }

    #[test]
    fn github_push() {
        let p = json!({"ref":"refs/heads/main","repository":{"full_name":"me/site"},"sender":{"login":"me"},
            "head_commit":{"id":"abc","message":"fix","url":"https://x/abc","author":{"name":"Me"}}});
        let got = sum(&facts("github"), &p);
        assert_eq!(got["repo"], "me/site");
        assert_eq!(got["branch"], "main");
        assert_eq!(got["head_commit"], json!({"id":"abc","message":"fix","url":"https://x/abc","author":"Me"}));
        assert_eq!(got["delivery"], "d-1");
        assert!(got.get("action").is_none(), "nulls are dropped");
    }

    #[test]
    fn gitlab_push_picks_checkout_sha() {
        let p = json!({"ref":"refs/heads/dev","project":{"path_with_namespace":"g/p"},"user_username":"u",
            "checkout_sha":"b2","commits":[{"id":"b2","message":"second"},{"id":"a1","message":"first"}]});
        let got = sum(&facts("gitlab"), &p);
        assert_eq!(got["repo"], "g/p");
        assert_eq!(got["sender"], "u");
        assert_eq!(got["head_commit"]["message"], "second");
    }

    #[test]
    fn bitbucket_and_stripe() {
        let p = json!({"repository":{"full_name":"t/r"},"actor":{"display_name":"A"},
            "push":{"changes":[{"new":{"name":"main"}}]}});
        let got = sum(&facts("bitbucket"), &p);
        assert_eq!(
            (got["repo"].as_str(), got["branch"].as_str(), got["sender"].as_str()),
            (Some("t/r"), Some("main"), Some("A"))
        );
        let p = json!({"id":"evt_1","type":"charge.succeeded","data":{"object":{"id":"ch_1","object":"charge"}}});
        assert_eq!(sum(&facts("stripe"), &p)["object"], json!({"id":"ch_1","type":"charge"}));
        assert_eq!(sum(&facts("slack"), &json!([1, 2]))["hook"], "deploy", "any payload shape");
    }
}
