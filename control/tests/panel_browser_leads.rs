//! The lead CRM in headless Chromium, as the issue shows it: create an
//! institution (a refusal first, at its field), two contacts with three
//! phone numbers, a note added and edited, its history with the word diff,
//! the institution found by a word only the old version of the note had,
//! the board (a card moved by its button and by drag-and-drop), an edit
//! refused because someone else saved first (both texts shown) and then
//! saved over theirs, and the conversion to a customer, whose page it links. Screenshots `leads*.png`
//! and `lead*.png` in `<target>/screenshots/`.

#[allow(dead_code)]
mod support;

use fantoccini::{Client, Locator};
use latchkey_control::app::AppState;
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::leads;
use sqlx::PgPool;
use support::browser::*;
use support::panel::admin;
use support::{config, serve};
use uuid::Uuid;

async fn id_of(pool: &PgPool, sql: &str, name: &str) -> Uuid {
    sqlx::query_scalar(sql)
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn scroll_to(browser: &Client, css: &str) {
    browser
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'start'})",
            vec![css.into()],
        )
        .await
        .unwrap();
}

/// Adds a phone number through the contact's own form.
async fn add_phone(browser: &Client, contact: Uuid, number: &str, label: &str, primary: bool) {
    let form = format!("#contact-{contact} .detail-add");
    fill(browser, &format!("{form} .detail-value-input"), number).await;
    fill(browser, &format!("{form} .detail-label-input"), label).await;
    if primary {
        click(browser, &format!("{form} input[name=primary]")).await;
    }
    click(browser, &format!("{form} .detail-add-submit")).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_lead_from_first_contact_to_customer(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let state = AppState::new(pool.clone(), &config(&[])).unwrap();
    let base = serve(state).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    browser.goto(&format!("{base}/leads")).await.unwrap();
    assert!(text(&browser, "#leads").await.contains("No leads yet."));
    screenshot(&browser, "leads_empty.png").await;

    // The institution: a website without a scheme is refused at its field.
    click(&browser, "#new-institution").await;
    arrives(&browser, "/leads/new").await;
    fill(&browser, "#name", "Gymnasium am Stadtpark").await;
    fill(&browser, "#kind", "school").await;
    fill(&browser, "#website", "gymnasium-stadtpark.de").await;
    fill(&browser, "#address", "Parkallee 4, 50667").await;
    fill(&browser, "#city", "Köln").await;
    fill(&browser, "#country", "DE").await;
    fill(&browser, "#tags", "school, nrw").await;
    fill(&browser, "#extra", "{\"pupils\": 900}").await;
    click(&browser, "#institution-submit").await;
    let refusal = text(&browser, "#website-error").await;
    assert!(
        refusal.contains("must be an address like https://example.org"),
        "{refusal}"
    );
    assert_eq!(
        find(&browser, "#city")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Köln"),
        "what was typed is kept"
    );
    screenshot(&browser, "lead_refused.png").await;
    let website = find(&browser, "#website").await;
    website.clear().await.unwrap();
    website
        .send_keys("https://gymnasium-stadtpark.de")
        .await
        .unwrap();
    click(&browser, "#institution-submit").await;
    find(&browser, "#institution-name").await;
    let lead = id_of(
        &pool,
        "SELECT id FROM lead_institutions WHERE name = $1",
        "Gymnasium am Stadtpark",
    )
    .await;
    arrives(&browser, &format!("/leads/{lead}")).await;
    assert_eq!(text(&browser, "#institution-stage").await, "New");

    // Two contacts, three phone numbers; a malformed one named at its field.
    for (name, title) in [("Anna Berg", "Schulleitung"), ("Jonas Weber", "IT")] {
        fill(&browser, "#contact-name", name).await;
        fill(&browser, "#contact-title", title).await;
        click(&browser, "#contact-submit").await;
        eventually(10, "the new contact", || async {
            browser
                .find(Locator::XPath(&format!(
                    "//h3[contains(@class, 'contact-name')][contains(., '{name}')]"
                )))
                .await
                .is_ok()
        })
        .await;
    }
    let sql = "SELECT id FROM lead_contacts WHERE full_name = $1";
    let anna = id_of(&pool, sql, "Anna Berg").await;
    let jonas = id_of(&pool, sql, "Jonas Weber").await;
    add_phone(&browser, anna, "0221 123", "office", false).await;
    let refused = text(&browser, &format!("#detail-new-{anna}-value-error")).await;
    assert!(
        refused.contains("Phone: must be an international number"),
        "{refused}"
    );
    scroll_to(&browser, &format!("#contact-{anna}")).await;
    screenshot(&browser, "lead_phone_refused.png").await;
    let value = find(&browser, &format!("#contact-{anna} .detail-value-input")).await;
    value.clear().await.unwrap();
    let label = find(&browser, &format!("#contact-{anna} .detail-label-input")).await;
    label.clear().await.unwrap();
    add_phone(&browser, anna, "+49 221 5550100", "office", true).await;
    find(&browser, &format!("#contact-{anna} .detail-phone")).await;
    add_phone(&browser, anna, "+49 170 5550101", "mobile", false).await;
    eventually(10, "Anna's second phone", || async {
        browser
            .find_all(Locator::Css(&format!("#contact-{anna} .detail-phone")))
            .await
            .unwrap()
            .len()
            == 2
    })
    .await;
    add_phone(&browser, jonas, "+49 221 5550200", "", false).await;
    find(&browser, &format!("#contact-{jonas} .detail-phone")).await;
    let phones = browser
        .find_all(Locator::Css("#contacts .detail-phone"))
        .await
        .unwrap();
    assert_eq!(phones.len(), 3);
    let anna_card = text(&browser, &format!("#contact-{anna}")).await;
    assert!(
        anna_card.contains("+492215550100") && anna_card.contains("★ primary"),
        "{anna_card}"
    );
    scroll_to(&browser, "#contacts").await;
    screenshot(&browser, "lead_contacts.png").await;

    // A note, then an edit of it: tablets become laptops.
    fill(
        &browser,
        "#note-body",
        "Anna wants 30 tablets for the new computer room before the summer.",
    )
    .await;
    click(&browser, "#note-submit").await;
    find(&browser, "#timeline .note").await;
    let note: Uuid = sqlx::query_scalar("SELECT id FROM lead_notes")
        .fetch_one(&pool)
        .await
        .unwrap();
    click(&browser, &format!("#note-{note} .note-edit summary")).await;
    let body = find(&browser, &format!("#note-{note} .note-edit-form textarea")).await;
    body.clear().await.unwrap();
    body.send_keys("Anna wants 30 laptops for the new computer room before the autumn.")
        .await
        .unwrap();
    click(&browser, &format!("#note-{note} .note-save")).await;
    eventually(10, "the edited note", || async {
        text(&browser, &format!("#note-{note} .note-body"))
            .await
            .contains("laptops")
    })
    .await;
    assert!(
        text(&browser, &format!("#note-{note} .note-meta"))
            .await
            .contains("version 2")
    );
    scroll_to(&browser, "#notes").await;
    screenshot(&browser, "lead_notes.png").await;

    // Its history: version 2 against version 1, word by word.
    click(&browser, &format!("#note-{note} .note-history")).await;
    arrives(&browser, &format!("/leads/notes/{note}")).await;
    let deleted: Vec<String> = words(&browser, "#version-2 .version-diff del").await;
    let inserted: Vec<String> = words(&browser, "#version-2 .version-diff ins").await;
    assert_eq!(deleted, ["tablets", "summer."], "{inserted:?}");
    assert_eq!(inserted, ["laptops", "autumn."]);
    assert!(
        text(&browser, "#version-1")
            .await
            .contains("The first version")
    );
    screenshot(&browser, "lead_note_history.png").await;
    click(&browser, "#compare-submit").await;
    let chosen = text(&browser, "#comparison").await;
    assert!(chosen.contains("Version 1 → version 2"), "{chosen}");

    // Found by a word only the old version had, as you type.
    browser.goto(&format!("{base}/leads")).await.unwrap();
    fill(&browser, "#lead-search", "tablets").await;
    eventually(10, "the search's hit", || async {
        browser
            .find(Locator::Css("#search-hits .hit-note"))
            .await
            .is_ok()
    })
    .await;
    let hit = text(&browser, "#search-hits .hit-note").await;
    assert!(
        hit.contains("Gymnasium am Stadtpark") && hit.contains("version 1 of 2 (an older text"),
        "{hit}"
    );
    assert_eq!(path(&browser).await, "/leads", "answered in place");
    screenshot(&browser, "leads_search.png").await;

    // The board: → moves the card on; a drop moves it further.
    click(&browser, "#board-view").await;
    arrives(&browser, "/leads/board").await;
    find(&browser, &format!("#column-new #card-{lead}")).await;
    click(&browser, &format!("#card-{lead} .move-on")).await;
    find(&browser, &format!("#column-contacted #card-{lead}")).await;
    assert_eq!(path(&browser).await, "/leads/board", "moved in place");
    browser
        .execute(
            "const card = document.getElementById(arguments[0]);
             const column = document.getElementById('column-proposal');
             const data = new DataTransfer();
             const fire = (target, type) => target.dispatchEvent(
               new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data }));
             fire(card, 'dragstart'); fire(column, 'dragover'); fire(column, 'drop'); fire(card, 'dragend');",
            vec![format!("card-{lead}").into()],
        )
        .await
        .unwrap();
    find(&browser, &format!("#column-proposal #card-{lead}")).await;
    assert_eq!(text(&browser, "#column-proposal .count").await, "1");
    screenshot(&browser, "leads_board.png").await;
    let stage: String = sqlx::query_scalar("SELECT stage FROM lead_institutions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stage, "proposal");

    // Someone else edits the note while it is open here: saving the
    // edit is refused with both texts shown, then saved over theirs.
    click(&browser, &format!("#card-{lead} .card-name")).await;
    click(&browser, &format!("#note-{note} .note-edit summary")).await;
    leads::edit_note(
        &pool,
        &RequestContext::system("a colleague"),
        note,
        2,
        "Anna wants 30 laptops and a projector before the autumn.",
    )
    .await
    .unwrap();
    let body = find(&browser, &format!("#note-{note} .note-edit-form textarea")).await;
    body.send_keys(" Budget approved.").await.unwrap();
    click(&browser, &format!("#note-{note} .note-save")).await;
    let conflict = text(&browser, "#note-conflict").await;
    assert!(
        conflict.contains("Not saved: someone changed the note first.")
            && conflict.contains("You started from version 2; it is at version 3 now."),
        "{conflict}"
    );
    assert!(
        text(&browser, "#conflict-current")
            .await
            .contains("and a projector")
    );
    assert!(
        find(&browser, "#conflict-body")
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
            .ends_with("autumn. Budget approved.")
    );
    scroll_to(&browser, "#notes").await;
    screenshot(&browser, "lead_note_conflict.png").await;
    click(&browser, "#conflict-save").await;
    eventually(10, "the merged note saved", || async {
        text(&browser, &format!("#note-{note} .note-meta"))
            .await
            .contains("version 4")
    })
    .await;

    // Converted after a confirmation; the page links the customer.
    click(&browser, "#convert").await;
    arrives(&browser, &format!("/leads/{lead}/convert")).await;
    assert_eq!(
        find(&browser, "#name")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Gymnasium am Stadtpark")
    );
    screenshot(&browser, "lead_convert.png").await;
    click(&browser, "#convert-submit").await;
    find(&browser, "#converted-banner").await;
    assert_eq!(text(&browser, "#institution-stage").await, "Won");
    assert!(browser.find(Locator::Css("#convert")).await.is_err());
    screenshot(&browser, "lead_converted.png").await;
    click(&browser, "#new-customer-link").await;
    let customer: Uuid = sqlx::query_scalar("SELECT id FROM customers")
        .fetch_one(&pool)
        .await
        .unwrap();
    arrives(&browser, &format!("/customers/{customer}")).await;
    assert_eq!(
        text(&browser, "#customer-name").await,
        "Gymnasium am Stadtpark"
    );
    screenshot(&browser, "lead_customer.png").await;
    browser.close().await.unwrap();
}

/// The text of each element matching `css`.
async fn words(browser: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in browser.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.text().await.unwrap());
    }
    out
}
