//! Microsoft Entra ID client credentials for Azure OpenAI (`entra:` on a `kind: azure`
//! provider): the grant's form (client id and secret, scope
//! `https://cognitiveservices.azure.com/.default`). The token itself is cached by
//! [`super::token::TokenCache`]; this module never sends anything.

use super::token::{form_encode, Grant};
use crate::config::Secret;

/// The scope of Azure OpenAI (Cognitive Services) tokens.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The tenant's standard v2.0 token endpoint.
pub fn default_token_url(tenant_id: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token")
}

/// The client-credentials grant of one app registration.
#[derive(Debug)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Secret,
}

impl Grant for ClientCredentials {
    fn form(&self) -> Result<String, String> {
        Ok(form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", &self.client_id),
            ("client_secret", self.client_secret.expose()),
            ("scope", SCOPE),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_form() {
        let g = ClientCredentials {
            client_id: "app-1".into(),
            client_secret: Secret::new("s3cr3t+/".into()),
        };
        assert_eq!(
            g.form().unwrap(),
            "grant_type=client_credentials&client_id=app-1&client_secret=s3cr3t%2B%2F\
             &scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"
        );
        assert_eq!(
            default_token_url("t1"),
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
    }
}
