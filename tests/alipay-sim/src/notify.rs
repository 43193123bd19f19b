//! Notifications: signed as Alipay signs them, delivered to the trade's `notify_url` on
//! Alipay's retry schedule until the answer is `success`; held, dropped, duplicated, delayed or
//! badly signed when a fault says so.

#[allow(unused_imports)]
use crate::*;

pub(crate) fn notification_body(
    inner: &Inner,
    fields: &BTreeMap<String, String>,
    corrupt: bool,
) -> String {
    let mut sign = sign(inner, &content_to_sign(fields, true));
    if corrupt {
        sign = sign.chars().rev().collect();
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        form.append_pair(key, value);
    }
    form.append_pair("sign", &sign);
    form.finish()
}

/// Sends a trade notification to the trade's notify_url, retrying on Alipay's schedule until
/// the answer is `success`.
pub(crate) fn notify(
    inner: &Arc<Inner>,
    trade: &Trade,
    trade_status: &str,
    extra: &[(&str, String)],
) {
    let Some(notify_url) = trade.notify_url.clone() else {
        return;
    };
    let fault = take_fault(inner, "notify");
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let (now, _) = china_now(inner);
    let mut fields: BTreeMap<String, String> = [
        ("notify_id", format!("2026{n:028}")),
        ("notify_type", "trade_status_sync".to_owned()),
        ("notify_time", now.clone()),
        ("charset", "utf-8".to_owned()),
        ("version", "1.0".to_owned()),
        ("sign_type", "RSA2".to_owned()),
        ("app_id", inner.config.app_id.clone()),
        ("auth_app_id", inner.config.app_id.clone()),
        ("seller_id", inner.config.seller_id.clone()),
        ("seller_email", "merchant@example.com".to_owned()),
        ("buyer_id", trade.buyer_id.clone()),
        ("buyer_logon_id", "buy***@example.com".to_owned()),
        ("trade_no", trade.trade_no.clone()),
        ("out_trade_no", trade.out_trade_no.clone()),
        ("trade_status", trade_status.to_owned()),
        ("total_amount", trade.total_amount.clone()),
        ("receipt_amount", trade.total_amount.clone()),
        ("invoice_amount", trade.total_amount.clone()),
        ("buyer_pay_amount", trade.total_amount.clone()),
        ("point_amount", "0.00".to_owned()),
        ("subject", trade.subject.clone()),
        ("gmt_create", trade.gmt_create.clone()),
        ("gmt_payment", trade.gmt_payment.clone().unwrap_or_default()),
        (
            "fund_bill_list",
            format!(
                "[{{\"amount\":\"{}\",\"fundChannel\":\"{}\"}}]",
                trade.total_amount, trade.fund_channel
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in extra {
        fields.insert((*key).to_owned(), value.clone());
    }
    // A contracted merchant's paid trades: the cross-border fields, as the notify
    // documentation's sample lists them.
    if matches!(trade_status, "TRADE_SUCCESS" | "TRADE_FINISHED") {
        for (key, value) in crate::cross_border_fields(inner, trade) {
            fields.insert(key.to_owned(), value);
        }
    }
    // Certificate mode: the simulator names its certificate in notifications too, signed like
    // every field (one of the two answers docs/alipay/operations.md leaves open; the gateway takes both).
    if let Some(certs) = &lock(&inner.keys).certificates {
        fields.insert("alipay_cert_sn".into(), certs.alipay_cert.sn.clone());
    }
    send_notification(
        inner,
        notify_url,
        fields,
        &trade.out_trade_no,
        trade_status,
        fault,
    );
}

/// Sends signed notification `fields` to `notify_url` on Alipay's retry schedule until the
/// answer is `success`, recorded as a delivery of `subject` (`label` says what it told).
pub(crate) fn send_notification(
    inner: &Arc<Inner>,
    notify_url: String,
    fields: BTreeMap<String, String>,
    subject: &str,
    label: &str,
    fault: Option<FaultKind>,
) {
    let index = {
        let mut state = lock(&inner.state);
        state.deliveries.push(Delivery {
            notify_id: fields.get("notify_id").cloned().unwrap_or_default(),
            out_trade_no: subject.to_owned(),
            trade_status: label.to_owned(),
            attempts: Vec::new(),
            acknowledged: false,
        });
        state.deliveries.len() - 1
    };
    if fault == Some(FaultKind::Drop) {
        return;
    }
    let body = notification_body(inner, &fields, fault == Some(FaultKind::BadNotifySignature));
    // Subscribed now, so a release that comes after this notification was made lets it go.
    let mut release = inner.released.subscribe();
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        match fault {
            Some(FaultKind::Delay { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Some(FaultKind::Hold) => {
                let _ = release.changed().await;
            }
            _ => {}
        }
        let schedule = std::iter::once(0).chain(RETRY_SCHEDULE_SECONDS);
        for (attempt, delay) in schedule.enumerate() {
            tokio::time::sleep(Duration::from_secs_f64(
                delay as f64 * inner.config.time_scale,
            ))
            .await;
            let copies = if attempt == 0 && fault == Some(FaultKind::Duplicate) {
                2
            } else {
                1
            };
            // Copies start together, so a duplicate really arrives concurrently.
            let mut sends = tokio::task::JoinSet::new();
            for _ in 0..copies {
                let (inner, url, body) = (Arc::clone(&inner), notify_url.clone(), body.clone());
                sends.spawn(async move { deliver(&inner, &url, &body).await });
            }
            let mut results = Vec::new();
            while let Some(Ok(result)) = sends.join_next().await {
                results.push(result);
            }
            let acknowledged = results.iter().any(|r| r == "HTTP 200 success");
            {
                let mut state = lock(&inner.state);
                if let Some(delivery) = state.deliveries.get_mut(index) {
                    delivery.attempts.extend(results);
                    delivery.acknowledged |= acknowledged;
                }
            }
            if acknowledged {
                return;
            }
        }
    });
}

pub(crate) async fn deliver(inner: &Inner, notify_url: &str, body: &str) -> String {
    let request = match hyper::Request::post(notify_url)
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
    {
        Ok(request) => request,
        Err(e) => return format!("error: {e}"),
    };
    match tokio::time::timeout(Duration::from_secs(15), inner.http.request(request)).await {
        Err(_) => "error: timeout".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            use http_body_util::BodyExt as _;
            let text = match response.into_body().collect().await {
                Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
                Err(e) => format!("error: {e}"),
            };
            format!("HTTP {status} {text}")
        }
    }
}

pub(crate) fn release_held(inner: &Inner) {
    inner.released.send_modify(|n| *n += 1);
}
