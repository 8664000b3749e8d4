//! Goldens from the providers' documented examples: Gemini `embedContent` /
//! `batchEmbedContents` (ai.google.dev embeddings guide), Ollama `/api/embed` (docs/api.md),
//! Cloudflare `@cf/baai/bge-base-en-v1.5` (workers-ai model page), OpenAI's embeddings answer.

use super::*;
use serde_json::json;

fn req(body: Value) -> EmbeddingsRequest {
    parse_request(&serde_json::to_vec(&body).unwrap()).unwrap()
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn gemini_one_input_is_embed_content_as_documented() {
    let r = req(json!({"model": "e", "input": "What is the meaning of life?"}));
    let (enc, dropped) = encode_request(Dialect::Gemini, &r, "gemini-embedding-001", true).unwrap();
    assert!(dropped.is_empty());
    assert_eq!(enc.path, "/models/gemini-embedding-001:embedContent");
    assert_eq!(
        json_of(&enc.body),
        json!({"model": "models/gemini-embedding-001",
               "content": {"parts": [{"text": "What is the meaning of life?"}]}})
    );
    let answer = br#"{"embedding": {"values": [-0.022374554, -0.004560777, 0.013309286]}}"#;
    let e = decode_response(Dialect::Gemini, answer, 1).unwrap();
    assert_eq!(
        e.vectors,
        vec![vec![-0.022374554, -0.004560777, 0.013309286]]
    );
    assert_eq!(e.prompt_tokens, None);
}

#[test]
fn gemini_several_inputs_are_one_batch_with_output_dimensionality() {
    let r = req(json!({"model": "e", "dimensions": 768, "input": [
        "What is the meaning of life?", "How much wood would a woodchuck chuck?"]}));
    let (enc, _) =
        encode_request(Dialect::Gemini, &r, "models/gemini-embedding-001", true).unwrap();
    assert_eq!(enc.path, "/models/gemini-embedding-001:batchEmbedContents");
    assert_eq!(
        json_of(&enc.body),
        json!({"requests": [
            {"model": "models/gemini-embedding-001",
             "content": {"parts": [{"text": "What is the meaning of life?"}]},
             "outputDimensionality": 768},
            {"model": "models/gemini-embedding-001",
             "content": {"parts": [{"text": "How much wood would a woodchuck chuck?"}]},
             "outputDimensionality": 768}]})
    );
    let answer = br#"{"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}"#;
    let e = decode_response(Dialect::Gemini, answer, 2).unwrap();
    assert_eq!(e.vectors, vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
}

#[test]
fn vertex_predict_answer_as_documented() {
    // Vertex AI text embeddings (cloud.google.com/vertex-ai get-text-embeddings): one prediction
    // per instance, with its token count.
    let answer = br#"{"predictions": [
        {"embeddings": {"statistics": {"truncated": false, "token_count": 6},
                        "values": [0.0058, 0.011, -0.0342]}},
        {"embeddings": {"statistics": {"truncated": false, "token_count": 9},
                        "values": [0.5, -0.25, 0.125]}}],
        "metadata": {"billableCharacterCount": 57}}"#;
    let e = decode_response(Dialect::Gemini, answer, 2).unwrap();
    assert_eq!(
        e.vectors,
        vec![vec![0.0058, 0.011, -0.0342], vec![0.5, -0.25, 0.125]]
    );
    assert_eq!(e.prompt_tokens, Some(15));
    assert!(decode_response(Dialect::Gemini, answer, 3).is_err());
}

#[test]
fn ollama_embed_as_documented() {
    let r =
        req(json!({"model": "e", "input": ["Why is the sky blue?", "Why is the grass green?"]}));
    let (enc, _) = encode_request(Dialect::Ollama, &r, "all-minilm", true).unwrap();
    assert_eq!(enc.path, "/api/embed");
    assert_eq!(
        json_of(&enc.body),
        json!({"model": "all-minilm", "input": ["Why is the sky blue?", "Why is the grass green?"]})
    );
    let one = req(json!({"model": "e", "input": "Why is the sky blue?", "dimensions": 256}));
    let (enc, _) = encode_request(Dialect::Ollama, &one, "all-minilm", true).unwrap();
    assert_eq!(
        json_of(&enc.body),
        json!({"model": "all-minilm", "input": "Why is the sky blue?", "dimensions": 256})
    );
    let answer = br#"{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862,0.05007221],[-0.0098027075,0.06042469,0.025257962]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#;
    let e = decode_response(Dialect::Ollama, answer, 2).unwrap();
    assert_eq!(e.vectors[1], vec![-0.0098027075, 0.06042469, 0.025257962]);
    assert_eq!(e.prompt_tokens, Some(8));
}

#[test]
fn cloudflare_bge_as_documented_and_dimensions_refused() {
    let r = req(json!({"model": "e", "input": [
        "This is a story about an orange cloud", "This is a story about a llama"]}));
    let (enc, _) =
        encode_request(Dialect::Cloudflare, &r, "@cf/baai/bge-base-en-v1.5", true).unwrap();
    assert_eq!(enc.path, "/run/@cf/baai/bge-base-en-v1.5");
    assert_eq!(
        json_of(&enc.body),
        json!({"text": ["This is a story about an orange cloud", "This is a story about a llama"]})
    );
    let answer = br#"{"result":{"shape":[2,3],"data":[[0.1,0.2,0.3],[0.4,0.5,0.6]],"pooling":"mean"},"success":true,"errors":[],"messages":[]}"#;
    let e = decode_response(Dialect::Cloudflare, answer, 2).unwrap();
    assert_eq!(e.vectors, vec![vec![0.1, 0.2, 0.3], vec![0.4, 0.5, 0.6]]);
    // `shape` that disagrees with `data` is malformed.
    let bad = br#"{"result":{"shape":[2,4],"data":[[0.1,0.2,0.3],[0.4,0.5,0.6]]},"success":true}"#;
    assert!(decode_response(Dialect::Cloudflare, bad, 2).is_err());
    let sized = req(json!({"model": "e", "input": "x", "dimensions": 8}));
    let err = encode_request(
        Dialect::Cloudflare,
        &sized,
        "@cf/baai/bge-base-en-v1.5",
        true,
    )
    .unwrap_err();
    assert_eq!(err.param(), Some("dimensions"));
    let (_, dropped) = encode_request(
        Dialect::Cloudflare,
        &sized,
        "@cf/baai/bge-base-en-v1.5",
        false,
    )
    .unwrap();
    assert_eq!(dropped, vec!["dimensions".to_string()]);
}

#[test]
fn cloudflare_error_envelope_on_2xx_is_an_error() {
    let body = br#"{"result":null,"success":false,"errors":[{"code":5007,"message":"No such model"}],"messages":[]}"#;
    let e = decode_response(Dialect::Cloudflare, body, 1).unwrap_err();
    assert!(e.message.contains("No such model"), "{}", e.message);
}

#[test]
fn anthropic_has_no_embeddings_and_says_which_field_to_change() {
    let r = req(json!({"model": "e", "input": "x"}));
    let err = encode_request(Dialect::Anthropic, &r, "claude", true).unwrap_err();
    assert_eq!(err.param(), Some("model"));
    assert!(err.to_string().contains("anthropic") && err.to_string().contains("embeddings"));
}

#[test]
fn a_wrong_number_of_vectors_is_a_provider_error() {
    let e = decode_response(Dialect::Ollama, br#"{"embeddings":[[1.0]]}"#, 2).unwrap_err();
    assert!(
        e.message.contains("1 embeddings for 2 inputs"),
        "{}",
        e.message
    );
    assert!(decode_response(Dialect::Gemini, br#"{"foo":1}"#, 1).is_err());
}

#[test]
fn bad_requests_name_their_field() {
    let p = |b: Value| parse_request(&serde_json::to_vec(&b).unwrap()).unwrap_err();
    assert_eq!(p(json!({"model": "e"})).param(), Some("input"));
    assert_eq!(p(json!({"model": "e", "input": []})).param(), Some("input"));
    assert_eq!(
        p(json!({"model": "e", "input": ["a", [1, 2]]})).param(),
        Some("input[1]")
    );
    let e = p(json!({"model": "e", "input": "a", "encoding_format": "hex"}));
    assert_eq!(e.param(), Some("encoding_format"));
    assert_eq!(
        p(json!({"model": "e", "input": "a", "dimensions": 0})).param(),
        Some("dimensions")
    );
    assert_eq!(
        p(json!({"model": "e", "input": "a", "dimensions": "8"})).param(),
        Some("dimensions")
    );
}

#[test]
fn base64_is_little_endian_f32_as_openai_sends_it() {
    // 1.0f32 = 00 00 80 3f; -2.0f32 = 00 00 00 c0.
    assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
    let body = encode_response(&[vec![1.0, -2.0]], "m", 3, true);
    assert_eq!(
        json_of(&body),
        json!({"object": "list", "data": [{"object": "embedding", "index": 0,
               "embedding": "AACAPwAAAMA="}], "model": "m",
               "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    );
}

#[test]
fn float_answer_has_openais_shape() {
    // The shape of OpenAI's documented example answer.
    let body = encode_response(
        &[vec![0.0023064255, -0.009327292]],
        "text-embedding-ada-002",
        8,
        false,
    );
    assert_eq!(
        json_of(&body),
        json!({"object": "list", "data": [{"object": "embedding", "index": 0,
               "embedding": [0.0023064255, -0.009327292]}],
               "model": "text-embedding-ada-002", "usage": {"prompt_tokens": 8, "total_tokens": 8}})
    );
    let back = decode_response(Dialect::OpenAi, &body, 1).unwrap();
    assert_eq!(back.vectors, vec![vec![0.0023064255, -0.009327292]]);
    assert_eq!(back.prompt_tokens, Some(8));
}

#[test]
fn estimated_tokens_are_about_four_characters_each() {
    let r = req(json!({"model": "e", "input": ["abcdefgh", "", "abcde"]}));
    assert_eq!(r.estimated_tokens(), 2 + 1 + 2);
}
