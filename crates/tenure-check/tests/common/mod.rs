//! A builder of small hand-made histories on one key, shared by the
//! checker's tests; clocks read true time unless a test says otherwise.
#![allow(dead_code)]

use serde_json::json;

/// A history being written, one JSON line per event.
#[derive(Default)]
pub struct H {
    pub lines: Vec<String>,
}

impl H {
    /// One event of process `p` at true time `t`, with `extra` fields.
    pub fn ev(
        &mut self,
        p: u64,
        op: &str,
        kind: &str,
        t: u64,
        extra: serde_json::Value,
    ) -> &mut Self {
        let mut e = json!({"process": p, "op": op, "type": kind, "time_ns": t, "clock_ns": t, "tenant": "t", "key": "k"});
        if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                e.insert(k.clone(), v.clone());
            }
        }
        self.lines.push(e.to_string());
        self
    }

    /// An acquire answered at `t` with `lease`, `token` and `deadline`.
    pub fn granted(&mut self, p: u64, t: u64, lease: &str, token: u64, deadline: u64) -> &mut Self {
        self.ev(
            p,
            "acquire",
            "ok",
            t,
            json!({"lease_id": lease, "token": token, "deadline_ns": deadline}),
        )
    }

    /// A release of `lease` sent at `from`, answered at `to`.
    pub fn release(&mut self, p: u64, from: u64, to: u64, lease: &str) -> &mut Self {
        self.ev(p, "release", "invoke", from, json!({"lease_id": lease}));
        self.ev(p, "release", "ok", to, json!({"lease_id": lease}))
    }

    /// A get sent at `from` that saw `holder` (none: free) and `token`.
    pub fn get(
        &mut self,
        p: u64,
        from: u64,
        to: u64,
        holder: Option<&str>,
        token: u64,
    ) -> &mut Self {
        self.ev(p, "get", "invoke", from, json!({}));
        let mut done = json!({"token": token});
        if let Some(h) = holder {
            done["holder"] = json!(h);
        }
        self.ev(p, "get", "ok", to, done)
    }

    /// The history as text.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}
