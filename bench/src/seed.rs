//! The seeded database several scenarios measure in, written in SQL.

use anyhow::Context;
use sqlx::PgPool;

/// Customers, licenses with a device for a third of them and an audit row
/// each, and open sessions, in SQL: the scenario times the pages, not this.
pub async fn licensing(pool: &PgPool, customers: u64, licenses: u64) -> anyhow::Result<()> {
    let steps = [
        "INSERT INTO products (slug, name) VALUES ('studio', 'Studio'), ('render', 'Render')",
        // Customer ids are md5-derived so licenses can name them without a join.
        "INSERT INTO customers (id, name, email, company, created_at)
         SELECT md5('c' || g)::uuid, 'Customer ' || g, 'customer' || g || '@example' || (g % 100) || '.com',
                'Company ' || (g % 5000), now() - g * interval '1 minute'
           FROM generate_series(1, $1) g",
        "INSERT INTO licenses (id, key_hash, key_prefix, key_sealed, customer_id, product_id, kind, status,
                               device_limit, session_limit, features, valid_until, batch_id, created_at)
         SELECT md5('l' || g)::uuid, decode(md5(g::text) || md5('k' || g), 'hex'),
                upper(substr(md5('p' || g), 1, 5)), '\\x00', md5('c' || (g % $1 + 1))::uuid,
                1 + g % 2, (ARRAY['full', 'trial', 'test'])[1 + g % 3],
                CASE WHEN g % 50 = 0 THEN 'suspended' WHEN g % 97 = 0 THEN 'revoked' ELSE 'active' END,
                3, g % 2, ARRAY['sync'], now() + (1 + g % 730) * interval '1 day',
                CASE WHEN g % 1000 < 50 THEN md5('b' || g / 1000)::uuid END,
                now() - g * interval '1 second'
           FROM generate_series(1, $2) g",
        "INSERT INTO devices (license_id, fingerprint_hash, digest, components, app_version, ip)
         SELECT id, decode(md5(id::text) || md5('f' || id::text), 'hex'),
                substr(decode(md5(id::text || 'd') || md5('d' || id::text), 'hex'), 1, 28),
                '{\"system_uuid\": \"bench\"}', '2.4.1', '192.0.2.10'
           FROM licenses WHERE get_byte(key_hash, 0) % 3 = 0",
        "INSERT INTO audit_log (request_id, actor_kind, actor_name, action, entity_kind, entity_id, at)
         SELECT 'seed', 'system', 'seed', 'license.create', 'license', id::text, created_at
           FROM licenses",
        "INSERT INTO sessions (license_id, device_id, token_expires_at, app_version, ip)
         SELECT d.license_id, d.id, now() + interval '1 day', '2.4.1', '192.0.2.10'
           FROM devices d LIMIT 500",
        "ANALYZE",
    ];
    for sql in steps {
        let query = sqlx::query(sql);
        let query = if sql.contains("$2") {
            query.bind(customers as i64).bind(licenses as i64)
        } else if sql.contains("$1") {
            query.bind(customers as i64)
        } else {
            query
        };
        query
            .execute(pool)
            .await
            .with_context(|| sql.lines().next().unwrap_or(sql).to_owned())?;
    }
    Ok(())
}
