//! The lead CRM's domain against the real PostgreSQL: note versions and
//! concurrent edits, soft-deleted contacts, conversion in one transaction,
//! detail validation, one primary per kind, and full-text search.

#[allow(dead_code)]
mod support;

use latchkey_control::context::{Actor, ActorKind, RequestContext};
use latchkey_control::db::admins::Role;
use latchkey_control::db::customers::NewCustomer;
use latchkey_control::db::leads::{
    self, ContactInput, DetailInput, DetailKind, Institution, InstitutionFilter, InstitutionInput,
    Match, NoteSubject,
};
use latchkey_control::error::{DomainError, Entity};
use sqlx::PgPool;
use uuid::Uuid;

/// A context acting as a fresh admin, so versions carry who edited.
async fn admin_ctx(pool: &PgPool, name: &str) -> (RequestContext, Uuid) {
    let id = support::panel::admin(pool, name, Role::Admin).await;
    let ctx = RequestContext {
        actor: Actor {
            kind: ActorKind::Admin,
            id: Some(id.to_string()),
            name: Some(name.to_owned()),
        },
        ..RequestContext::system("leads-test")
    };
    (ctx, id)
}

async fn institution(pool: &PgPool, ctx: &RequestContext, name: &str) -> Institution {
    leads::create_institution(
        pool,
        ctx,
        InstitutionInput {
            name: name.to_owned(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn audited(pool: &PgPool, ctx: &RequestContext) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE request_id = $1 ORDER BY id")
        .bind(&ctx.request_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn is_conflict(error: &DomainError) -> bool {
    matches!(error, DomainError::Conflict { .. })
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn five_edits_keep_every_version_in_order(pool: PgPool) {
    let (ctx, anna) = admin_ctx(&pool, "anna").await;
    let school = institution(&pool, &ctx, "Gymnasium Nord").await;
    let mut note = leads::add_note(&pool, &ctx, NoteSubject::Institution(school.id), "text 0")
        .await
        .unwrap();
    for n in 1..=5 {
        note = leads::edit_note(&pool, &ctx, note.id, note.version, &format!("text {n}"))
            .await
            .unwrap();
    }
    assert_eq!((note.version, note.body.as_str()), (6, "text 5"));
    let history = leads::note_history(&pool, note.id).await.unwrap();
    let seen: Vec<(i32, &str)> = history
        .iter()
        .map(|v| (v.version, v.body.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "text 0"),
            (2, "text 1"),
            (3, "text 2"),
            (4, "text 3"),
            (5, "text 4"),
            (6, "text 5")
        ]
    );
    assert!(
        history
            .iter()
            .all(|v| v.edited_by == Some(anna) && !v.deleted)
    );
    assert!(history.windows(2).all(|w| w[0].edited_at <= w[1].edited_at));

    // A delete is one more version, a tombstone; the text before stays.
    leads::delete_note(&pool, &ctx, note.id, 6).await.unwrap();
    let history = leads::note_history(&pool, note.id).await.unwrap();
    assert_eq!(history.len(), 7);
    assert!(history[6].deleted);
    assert_eq!(history[5].body, "text 5");
    assert!(
        leads::list_notes(&pool, school.id)
            .await
            .unwrap()
            .is_empty()
    );
    let error = leads::edit_note(&pool, &ctx, note.id, 7, "again")
        .await
        .unwrap_err();
    assert!(is_conflict(&error), "{error:?}");

    let actions = audited(&pool, &ctx).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "lead.note.update").count(),
        5
    );
    assert_eq!(actions.last().map(String::as_str), Some("lead.note.delete"));
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn concurrent_edits_from_one_base_keep_one_and_refuse_the_rest(pool: PgPool) {
    let (ctx, _) = admin_ctx(&pool, "anna").await;
    let school = institution(&pool, &ctx, "Realschule Süd").await;
    let note = leads::add_note(&pool, &ctx, NoteSubject::Institution(school.id), "start")
        .await
        .unwrap();
    for round in 0..10 {
        let base = note.version + round;
        let edits = (0..4).map(|writer| {
            let (pool, ctx) = (pool.clone(), ctx.clone());
            tokio::spawn(async move {
                let body = format!("round {round} writer {writer}");
                leads::edit_note(&pool, &ctx, note.id, base, &body).await
            })
        });
        let results = all_of(edits).await;
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(is_conflict),
            "{results:?}"
        );
        assert_eq!(won[0].version, base + 1);
    }
    // Nothing lost: one version per round, numbered without a gap.
    let history = leads::note_history(&pool, note.id).await.unwrap();
    let versions: Vec<i32> = history.iter().map(|v| v.version).collect();
    assert_eq!(versions, (1..=11).collect::<Vec<_>>());
}

/// Every task's result, in order; the tasks run meanwhile.
async fn all_of<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.unwrap());
    }
    out
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn a_deleted_contacts_notes_keep_their_history(pool: PgPool) {
    let (ctx, _) = admin_ctx(&pool, "anna").await;
    let uni = institution(&pool, &ctx, "Universität Bonn").await;
    let contact = leads::create_contact(
        &pool,
        &ctx,
        uni.id,
        ContactInput {
            full_name: "Dr. Berta Klein".into(),
            title: Some("IT-Leitung".into()),
        },
    )
    .await
    .unwrap();
    let note = leads::add_note(&pool, &ctx, NoteSubject::Contact(contact.id), "first call")
        .await
        .unwrap();
    assert_eq!(note.institution_id, Some(uni.id));
    leads::edit_note(&pool, &ctx, note.id, 1, "second call")
        .await
        .unwrap();

    leads::delete_contact(&pool, &ctx, contact.id)
        .await
        .unwrap();
    let error = leads::get_contact(&pool, contact.id).await.unwrap_err();
    assert!(matches!(error, DomainError::NotFound(Entity::LeadContact)));
    assert!(
        leads::list_contacts(&pool, uni.id)
            .await
            .unwrap()
            .is_empty()
    );

    let history = leads::note_history(&pool, note.id).await.unwrap();
    let bodies: Vec<&str> = history.iter().map(|v| v.body.as_str()).collect();
    assert_eq!(bodies, ["first call", "second call"]);
    let timeline = leads::list_notes(&pool, uni.id).await.unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].contact_id, Some(contact.id));
    // A deleted contact takes no new notes.
    let error = leads::add_note(&pool, &ctx, NoteSubject::Contact(contact.id), "x")
        .await
        .unwrap_err();
    assert!(matches!(error, DomainError::NotFound(Entity::LeadContact)));
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn conversion_is_one_transaction_and_happens_once(pool: PgPool) {
    let (ctx, _) = admin_ctx(&pool, "anna").await;
    let lead = institution(&pool, &ctx, "Klinikum Mitte").await;
    let customers_before: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&pool)
        .await
        .unwrap();

    // The customer step fails (its own rule refuses the address): no
    // customer, no link, no audit row of a conversion.
    let bad = NewCustomer {
        name: lead.name.clone(),
        email: Some("not an address".into()),
        ..Default::default()
    };
    let error = leads::convert_to_customer(&pool, &ctx, lead.id, bad)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("email"));
    let unchanged = leads::get_institution(&pool, lead.id).await.unwrap();
    assert_eq!(
        (unchanged.customer_id, unchanged.stage.as_str()),
        (None, "new")
    );
    let customers_now: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(customers_now, customers_before);

    let good = NewCustomer {
        name: lead.name.clone(),
        company: Some(lead.name.clone()),
        email: Some("it@klinikum-mitte.de".into()),
        ..Default::default()
    };
    let (converted, customer) = leads::convert_to_customer(&pool, &ctx, lead.id, good.clone())
        .await
        .unwrap();
    assert_eq!(converted.customer_id, Some(customer.id));
    assert_eq!(converted.stage, "won");
    assert!(converted.converted_at.is_some());

    let error = leads::convert_to_customer(&pool, &ctx, lead.id, good)
        .await
        .unwrap_err();
    assert!(is_conflict(&error), "{error:?}");
    let customers_after: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(customers_after, customers_before + 1);
    let actions = audited(&pool, &ctx).await;
    assert_eq!(
        actions,
        [
            "lead.institution.create",
            "customer.create",
            "lead.institution.convert"
        ]
    );
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn details_are_validated_normalised_and_have_one_primary(pool: PgPool) {
    let (ctx, _) = admin_ctx(&pool, "anna").await;
    let lead = institution(&pool, &ctx, "Stadtbibliothek").await;
    let contact = leads::create_contact(
        &pool,
        &ctx,
        lead.id,
        ContactInput {
            full_name: "Carl Mayer".into(),
            title: None,
        },
    )
    .await
    .unwrap();
    let detail = |kind, value: &str, primary| DetailInput {
        kind,
        value: value.to_owned(),
        label: Some("office".into()),
        is_primary: primary,
    };
    for (kind, value, field) in [
        (DetailKind::Email, "carl@", "email"),
        (DetailKind::Phone, "0228 1234567", "phone"),
    ] {
        let error = leads::add_detail(&pool, &ctx, contact.id, detail(kind, value, false))
            .await
            .unwrap_err();
        assert_eq!(error.field(), Some(field), "{value}");
    }

    let first = leads::add_detail(
        &pool,
        &ctx,
        contact.id,
        detail(DetailKind::Phone, "+49 (228) 123-4567", true),
    )
    .await
    .unwrap();
    assert_eq!(first.value, "+492281234567");
    let second = leads::add_detail(
        &pool,
        &ctx,
        contact.id,
        detail(DetailKind::Phone, "+49 171 5550000", true),
    )
    .await
    .unwrap();
    let mail = leads::add_detail(
        &pool,
        &ctx,
        contact.id,
        detail(DetailKind::Email, " Carl@Bibliothek.DE ", true),
    )
    .await
    .unwrap();
    assert_eq!(mail.value, "Carl@bibliothek.de");
    let error = leads::add_detail(
        &pool,
        &ctx,
        contact.id,
        detail(DetailKind::Phone, "+492281234567", false),
    )
    .await
    .unwrap_err();
    assert!(is_conflict(&error), "{error:?}");

    // The newer primary took the mark; one phone and one e-mail are primary.
    let details = leads::get_contact(&pool, contact.id).await.unwrap().details;
    let primary: Vec<i64> = details
        .iter()
        .filter(|d| d.is_primary)
        .map(|d| d.id)
        .collect();
    assert_eq!(details.len(), 3);
    assert!(primary.contains(&second.id) && primary.contains(&mail.id) && primary.len() == 2);
    // An edit may move the mark back; a delete takes the detail away.
    let moved = DetailInput {
        label: None,
        ..detail(DetailKind::Phone, "+49 228 1234567", true)
    };
    let first = leads::update_detail(&pool, &ctx, first.id, moved)
        .await
        .unwrap();
    assert!(first.is_primary && first.label.is_none());
    leads::delete_detail(&pool, &ctx, mail.id).await.unwrap();
    let details = leads::get_contact(&pool, contact.id).await.unwrap().details;
    let primary: Vec<i64> = details
        .iter()
        .filter(|d| d.is_primary)
        .map(|d| d.id)
        .collect();
    assert_eq!((details.len(), primary), (2, vec![first.id]));
    let error = leads::delete_detail(&pool, &ctx, mail.id)
        .await
        .unwrap_err();
    assert!(matches!(error, DomainError::NotFound(Entity::LeadDetail)));
    let rest = leads::get_contact(&pool, contact.id).await.unwrap().details;
    assert!(rest.iter().any(|d| d.id == second.id && !d.is_primary));

    // The database refuses a second primary written around the service.
    let raw = sqlx::query("UPDATE lead_contact_details SET is_primary = true WHERE id = $1")
        .bind(second.id)
        .execute(&pool)
        .await;
    assert!(raw.is_err());
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn search_finds_old_versions_and_german_inflections(pool: PgPool) {
    let (ctx, _) = admin_ctx(&pool, "anna").await;
    let school = institution(&pool, &ctx, "Grundschule am Park").await;
    let other = institution(&pool, &ctx, "Hochschule Rhein").await;
    let note = leads::add_note(
        &pool,
        &ctx,
        NoteSubject::Institution(school.id),
        "Budget approved for tablets",
    )
    .await
    .unwrap();
    leads::edit_note(&pool, &ctx, note.id, 1, "Waiting for the school board")
        .await
        .unwrap();
    leads::add_note(
        &pool,
        &ctx,
        NoteSubject::Institution(other.id),
        "Die Verträge wurden unterschrieben",
    )
    .await
    .unwrap();

    // A word only the old version had still finds the note.
    let hits = leads::search(&pool, "tablets", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].institution_id, hits[0].matched),
        (school.id, Match::Note)
    );
    assert_eq!(
        (hits[0].note_id, hits[0].note_version),
        (Some(note.id), Some(1))
    );

    // German stemming: the singular finds the plural.
    let hits = leads::search(&pool, "Vertrag", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].institution_id, other.id);
    // English stemming works in the same index.
    let hits = leads::search(&pool, "approve", 10).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.institution_id).collect::<Vec<_>>(),
        [school.id]
    );

    let contact = leads::create_contact(
        &pool,
        &ctx,
        other.id,
        ContactInput {
            full_name: "Dora Schmidt".into(),
            title: Some("Einkauf".into()),
        },
    )
    .await
    .unwrap();
    let hits = leads::search(&pool, "Schmidt", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].institution_id, hits[0].matched, hits[0].contact_id),
        (other.id, Match::Contact, Some(contact.id))
    );

    // Institutions are found by name; a deleted note is not.
    let hits = leads::search(&pool, "Hochschule", 10).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.matched).collect::<Vec<_>>(),
        [Match::Institution]
    );
    leads::delete_note(&pool, &ctx, note.id, 2).await.unwrap();
    assert!(
        leads::search(&pool, "tablets", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        leads::search(&pool, " ", 10).await.unwrap_err().field(),
        Some("q")
    );
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn institutions_filter_and_page_by_keyset(pool: PgPool) {
    let (ctx, anna) = admin_ctx(&pool, "anna").await;
    for n in 0..5 {
        leads::create_institution(
            &pool,
            &ctx,
            InstitutionInput {
                name: format!("Schule {n}"),
                stage: Some(if n % 2 == 0 { "contacted" } else { "new" }.into()),
                owner_id: (n < 2).then_some(anna),
                tags: if n == 4 {
                    vec!["Bayern".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let all = InstitutionFilter::default();
    let (page, next) = leads::list_institutions(&pool, &all, None, 3)
        .await
        .unwrap();
    let (rest, last) = leads::list_institutions(&pool, &all, next, 3)
        .await
        .unwrap();
    let names: Vec<String> = page.iter().chain(&rest).map(|i| i.name.clone()).collect();
    assert_eq!(
        names,
        ["Schule 4", "Schule 3", "Schule 2", "Schule 1", "Schule 0"]
    );
    assert_eq!(last, None);

    let count = |filter: InstitutionFilter| {
        let pool = pool.clone();
        async move {
            leads::list_institutions(&pool, &filter, None, 10)
                .await
                .unwrap()
                .0
                .len()
        }
    };
    let stage = |s: &str| InstitutionFilter {
        stage: Some(s.into()),
        ..Default::default()
    };
    assert_eq!(count(stage("contacted")).await, 3);
    assert_eq!(
        count(InstitutionFilter {
            owner_id: Some(anna),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(InstitutionFilter {
            tag: Some(" bayern".into()),
            ..Default::default()
        })
        .await,
        1
    );
    let error = leads::list_institutions(&pool, &stage("maybe"), None, 10)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("stage"));

    let bad_owner = InstitutionInput {
        name: "X".into(),
        owner_id: Some(Uuid::new_v4()),
        ..Default::default()
    };
    let error = leads::create_institution(&pool, &ctx, bad_owner)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("owner_id"));

    let mut first = page[0].clone();
    let mut input = InstitutionInput::from(&first);
    input.website = Some("https://schule4.de".into());
    first = leads::update_institution(&pool, &ctx, first.id, input)
        .await
        .unwrap();
    assert_eq!(first.tags, ["bayern"]);
    leads::delete_institution(&pool, &ctx, first.id)
        .await
        .unwrap();
    let error = leads::get_institution(&pool, first.id).await.unwrap_err();
    assert!(matches!(
        error,
        DomainError::NotFound(Entity::LeadInstitution)
    ));
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn concurrent_conversions_make_one_customer(pool: PgPool) {
    let (ctx, _) = admin_ctx(&pool, "anna").await;
    let lead = institution(&pool, &ctx, "Berufsschule West").await;
    let tries = (0..4).map(|_| {
        let (pool, ctx) = (pool.clone(), ctx.clone());
        let customer = NewCustomer {
            name: "Berufsschule West".into(),
            ..Default::default()
        };
        tokio::spawn(
            async move { leads::convert_to_customer(&pool, &ctx, lead.id, customer).await },
        )
    });
    let results = all_of(tries).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(is_conflict)
    );
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM customers WHERE name = $1")
        .bind("Berufsschule West")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(customers, 1);
}
