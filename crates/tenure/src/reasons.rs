//! `tenure reasons`: the error vocabulary, for client authors and scripts.

use std::io::Write;

use tenure_core::Reason;
use tenure_proto::convert::grpc_code;

use crate::error::Error;

/// Prints every reason with its gRPC code, HTTP class and retryability.
pub fn print(out: &mut impl Write, json: bool) -> Result<(), Error> {
    if !json {
        writeln!(out, "{:<22} {:<20} {:>4}  retry", "reason", "grpc", "http")?;
    }
    for reason in Reason::ALL {
        let code = format!("{:?}", grpc_code(reason));
        if json {
            let row = serde_json::json!({
                "reason": reason.as_str(),
                "grpc_code": code,
                "grpc_code_number": grpc_code(reason) as i32,
                "http_status": reason.http_status(),
                "retryable": reason.is_retryable(),
            });
            writeln!(out, "{row}")?;
        } else {
            let retry = if reason.is_retryable() { "yes" } else { "no" };
            let http = reason.http_status();
            writeln!(out, "{:<22} {code:<20} {http:>4}  {retry}", reason.as_str())?;
        }
    }
    Ok(())
}
