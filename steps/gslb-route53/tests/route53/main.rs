//! Integration tests of gslb-route53 on the host: the signer and XML against botocore's own
//! output, and the whole step against a real `moto_server` on 127.0.0.1.

mod moto;
mod vectors;
