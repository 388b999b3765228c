#!/usr/bin/env python3
"""Print SigV4 test vectors for the Route 53 signer, produced by botocore itself.

Each vector is a real botocore Route 53 request (serialised by the route53 client,
signed by botocore.auth.SigV4Auth) at a fixed clock with fixed keys. The request is
captured in the `before-send` hook and never leaves the process.

Regenerate with:
    python3 steps/gslb-route53/tests/sigv4_vectors.py > steps/gslb-route53/tests/sigv4_vectors.json
"""
import datetime
import json
import sys

import botocore.auth
import botocore.session

FIXED = datetime.datetime(2026, 11, 27, 10, 46, 49)
botocore.auth.get_current_datetime = lambda *a, **k: FIXED


class Captured(Exception):
    pass


def capture(endpoint, token, op, **params):
    session = botocore.session.get_session()
    client = session.create_client(
        "route53",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
    )
    seen = {}

    def hook(request, **_):
        seen["method"] = request.method
        seen["url"] = request.url
        seen["headers"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        body = request.body
        seen["body"] = body.decode() if isinstance(body, bytes) else (body or "")
        raise Captured()

    client.meta.events.register("before-send", hook)
    try:
        getattr(client, op)(**params)
    except Captured:
        pass
    return {
        "name": f"{op}@{endpoint}" + ("+token" if token else ""),
        "operation": op,
        "method": seen["method"],
        "url": seen["url"],
        "body": seen["body"],
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "session_token": token,
        "unix_time": int(FIXED.replace(tzinfo=datetime.timezone.utc).timestamp()),
        "x_amz_date": seen["headers"]["X-Amz-Date"],
        "authorization": seen["headers"]["Authorization"],
    }


BATCH = {
    "Comment": "dr",
    "Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "api.example.com.", "Type": "A", "SetIdentifier": "eu-west-1",
            "Failover": "PRIMARY", "TTL": 60,
            "ResourceRecords": [{"Value": "203.0.113.10"}],
            "HealthCheckId": "d3caa4e9-5532-46d9-8e54-fb7deb8f1ffe"}},
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "api.example.com.", "Type": "A", "SetIdentifier": "us-east-1",
            "Failover": "SECONDARY", "TTL": 60,
            "ResourceRecords": [{"Value": "198.51.100.20"}]}},
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "lat.example.com.", "Type": "A", "SetIdentifier": "eu", "Region": "eu-west-1",
            "TTL": 60, "ResourceRecords": [{"Value": "203.0.113.10"}],
            "HealthCheckId": "d3caa4e9-5532-46d9-8e54-fb7deb8f1ffe"}},
        {"Action": "DELETE", "ResourceRecordSet": {
            "Name": "w.example.com.", "Type": "CNAME", "SetIdentifier": "blue", "Weight": 90,
            "TTL": 60, "ResourceRecords": [{"Value": "eu.gw.example.com"}]}},
    ],
}

# Keys in botocore model order: botocore serialises in the order given, and the step writes model order.
HC_FQDN = {"Port": 443, "Type": "HTTPS", "ResourcePath": "/status/ready",
           "FullyQualifiedDomainName": "eu.gw.example.com", "RequestInterval": 10, "FailureThreshold": 3}
HC_IP = {"IPAddress": "203.0.113.10", "Port": 7085, "Type": "HTTP",
         "ResourcePath": "/status/ready?x=1&y=a b", "RequestInterval": 30, "FailureThreshold": 2}

vectors = []
for endpoint in ("https://route53.amazonaws.com", "http://127.0.0.1:5055"):
    for token in (None, "FQoGZXIvYXdzEXAMPLE//token+with/specials=="):
        vectors.append(capture(endpoint, token, "change_resource_record_sets",
                               HostedZoneId="Z0123456789ABCDEFGHIJ", ChangeBatch=BATCH))
    vectors.append(capture(endpoint, None, "list_hosted_zones_by_name", DNSName="example.com."))
    vectors.append(capture(endpoint, None, "get_change", Id="/change/C2682N5HXP0BZ4"))
    vectors.append(capture(endpoint, None, "list_resource_record_sets",
                           HostedZoneId="/hostedzone/Z0123456789ABCDEFGHIJ",
                           StartRecordName="api.example.com.", StartRecordType="A",
                           StartRecordIdentifier="eu west/1", MaxItems="300"))
    vectors.append(capture(endpoint, None, "create_health_check",
                           CallerReference="meridian-0123abcd", HealthCheckConfig=HC_FQDN))
    vectors.append(capture(endpoint, None, "create_health_check",
                           CallerReference="meridian-ip & <ref>", HealthCheckConfig=HC_IP))
    vectors.append(capture(endpoint, None, "get_health_check_status",
                           HealthCheckId="d3caa4e9-5532-46d9-8e54-fb7deb8f1ffe"))

json.dump({"generator": "botocore " + botocore.__version__, "vectors": vectors}, sys.stdout, indent=1)
sys.stdout.write("\n")
