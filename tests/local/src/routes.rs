//! The merchant API's routes, read from `template.yaml` (the one description of what runs
//! where): every `HttpApi` event of every function, and which function has the Function URL.

use serde_yaml_ng::Value;

/// One route: a method, a path template like `/payments/{out_trade_no}`, and the function
/// (its binary name) that serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
}

impl Route {
    /// Whether a request path fits the template: `{name}` takes one non-empty segment.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let want: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let got: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        want.len() == got.len()
            && want
                .iter()
                .zip(&got)
                .all(|(w, g)| (w.starts_with('{') && w.ends_with('}')) || w == g)
    }
}

/// The routes of the template and the function behind its Function URL (the notify endpoint).
#[derive(Clone, Debug)]
pub struct Routes {
    pub api: Vec<Route>,
    pub function_url: Option<String>,
}

impl Routes {
    pub fn from_template(template: &Value) -> Result<Routes, String> {
        let resources = template
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or("template has no Resources")?;
        let mut api = Vec::new();
        let mut function_url = None;
        for (_, resource) in resources {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let function = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .ok_or("a function has no Metadata.BuildProperties.Binary")?
                .to_owned();
            let properties = resource.get("Properties");
            if properties
                .and_then(|p| p.get("FunctionUrlConfig"))
                .is_some()
            {
                function_url = Some(function.clone());
            }
            let events = properties
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping);
            for (_, event) in events.into_iter().flatten() {
                if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                    continue;
                }
                let text = |key: &str| {
                    event
                        .get("Properties")
                        .and_then(|p| p.get(key))
                        .and_then(Value::as_str)
                };
                let (Some(method), Some(path)) = (text("Method"), text("Path")) else {
                    return Err(format!(
                        "an HttpApi event of {function} lacks Method or Path"
                    ));
                };
                api.push(Route {
                    method: method.to_ascii_uppercase(),
                    path: path.to_owned(),
                    function: function.clone(),
                });
            }
        }
        api.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
        Ok(Routes { api, function_url })
    }

    /// The function for a request, if any route fits.
    pub fn function_for(&self, method: &str, path: &str) -> Option<&str> {
        self.api
            .iter()
            .find(|r| r.matches(method, path))
            .map(|r| r.function.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{read_template, template_path};

    #[test]
    fn the_template_routes_every_merchant_call_to_its_function() {
        let routes = Routes::from_template(&read_template(&template_path()).expect("template"))
            .expect("routes");
        let listed: Vec<(&str, &str, &str)> = routes
            .api
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str(), r.function.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("POST", "/payments", "create-payment"),
                ("GET", "/payments/{out_trade_no}", "create-payment"),
                ("POST", "/payments/{out_trade_no}/cancel", "create-payment"),
                ("POST", "/payments/{out_trade_no}/close", "create-payment"),
                ("POST", "/payments/{out_trade_no}/refunds", "refund"),
                (
                    "GET",
                    "/payments/{out_trade_no}/refunds/{out_request_no}",
                    "refund"
                ),
                ("POST", "/payments/{out_trade_no}/release", "create-payment"),
                ("POST", "/subscriptions", "subscriptions"),
                ("GET", "/subscriptions/{subscription_id}", "subscriptions"),
                (
                    "POST",
                    "/subscriptions/{subscription_id}/cancel",
                    "subscriptions"
                ),
                (
                    "POST",
                    "/subscriptions/{subscription_id}/cashier",
                    "subscriptions"
                ),
                (
                    "POST",
                    "/subscriptions/{subscription_id}/pause",
                    "subscriptions"
                ),
                (
                    "POST",
                    "/subscriptions/{subscription_id}/resume",
                    "subscriptions"
                ),
            ]
        );
        assert_eq!(routes.function_url.as_deref(), Some("notify"));
        assert_eq!(
            routes.function_for("GET", "/payments/o_1"),
            Some("create-payment")
        );
        assert_eq!(
            routes.function_for("POST", "/payments/o_1/refunds"),
            Some("refund")
        );
        assert_eq!(
            routes.function_for("POST", "/payments/o_1/close"),
            Some("create-payment")
        );
        assert_eq!(routes.function_for("DELETE", "/payments/o_1"), None);
        assert_eq!(
            routes.function_for("GET", "/payments/o_1/refunds/r_1/x"),
            None
        );
        assert_eq!(routes.function_for("GET", "/payments//refunds/r_1"), None);
    }
}
