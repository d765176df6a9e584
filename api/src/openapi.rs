//! The OpenAPI document served at `/api/openapi.json`, assembled from the handlers' annotations.

use crate::routes::{inbox, preferences, publish};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Real-time notifications: publish, inbox, preferences."),
    paths(
        inbox::list, inbox::stats, inbox::mark_read, inbox::mark_seen, inbox::mark_all_read, inbox::remove,
        inbox::connection_stats, preferences::read_preferences, preferences::update_preferences,
        publish::create_notification, publish::create_event,
    ),
    components(schemas(crate::error::FieldError, crate::domain::RecipientInput)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
