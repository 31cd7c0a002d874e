//! The concrete Fatture in Cloud event types (providers.md §1.6) and their expansion from route
//! patterns: a subscription must list concrete types, routes may use wildcards.

use crate::route::Pattern;

/// The prefix of every FIC webhook type.
pub const PREFIX: &str = "it.fattureincloud.webhooks.";

/// Every concrete type a subscription can request (the control type `subscriptions.welcome` is
/// sent by FIC on its own and is not requested).
pub fn all() -> Vec<String> {
    let mut out = Vec::new();
    let kinds = [
        "invoices",
        "quotes",
        "proformas",
        "receipts",
        "delivery_notes",
        "credit_notes",
        "orders",
        "work_reports",
        "supplier_orders",
        "self_supplier_invoices",
        "self_own_invoices",
    ];
    for kind in kinds {
        for action in ["create", "update", "delete", "email_sent"] {
            out.push(format!("{PREFIX}issued_documents.{kind}.{action}"));
        }
    }
    out.push(format!("{PREFIX}issued_documents.e_invoices.status_update"));
    out.push(format!("{PREFIX}received_documents.e_invoices.receive"));
    let crud = ["create", "update", "delete"];
    for family in [
        "received_documents",
        "receipts",
        "taxes",
        "cashbook",
        "archive_documents",
        "entities.clients",
        "entities.suppliers",
    ] {
        for action in crud {
            out.push(format!("{PREFIX}{family}.{action}"));
        }
    }
    for action in ["create", "update", "delete", "stock_update"] {
        out.push(format!("{PREFIX}products.{action}"));
    }
    out
}

/// The concrete types any of `patterns` matches, in catalogue order.
pub fn expand(patterns: &[&Pattern]) -> Vec<String> {
    all()
        .into_iter()
        .filter(|t| patterns.iter().any(|p| p.matches(t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::compile(s).expect("pattern")
    }

    #[test]
    fn catalogue_and_expansion() {
        let all = all();
        assert_eq!(all.len(), 44 + 2 + 21 + 4);
        let created = expand(&[&p("it.fattureincloud.webhooks.issued_documents.*.create")]);
        assert_eq!(created.len(), 11, "{created:?}");
        assert!(created
            .iter()
            .all(|t| t.ends_with(".create") && t.contains("issued_documents.")));
        let clients = expand(&[&p("it.fattureincloud.webhooks.entities.**")]);
        assert_eq!(clients.len(), 6);
        assert_eq!(expand(&[&p("**")]).len(), all.len());
        assert!(expand(&[&p("com.example.*")]).is_empty());
    }
}
