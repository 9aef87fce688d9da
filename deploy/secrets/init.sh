#!/bin/sh
# docker-compose.yml's one-shot secrets service: the CA and certificates (scripts/make-certs,
# installed in the image as make-certs) and the SCRAM passwords, once, into the `secrets` volume,
# each directory owned by the one service user that reads it (keys and passwords mode 600):
#   /secrets/kafka      the broker's key store and the CA (the apache/kafka image's user, uid 1000)
#   /secrets/agent      CA, the agents' client certificate and key, the admin API's certificate
#   /secrets/collector  CA and the collector's SCRAM password
#   /secrets/setup      the admin client config and both SCRAM passwords, for kafka-setup
# The native stack makes the same with scripts/kafka; the properties match deploy/kafka/.
set -eu
root=/secrets
[ -f "$root/.complete" ] && exit 0
ca=$root/ca
make-certs "$ca" imds-broker DNS:kafka DNS:localhost IP:127.0.0.1
make-certs "$ca" imds-agent
make-certs "$ca" imds-collector
make-certs "$ca" admin DNS:agent-east-1 DNS:agent-east-2 DNS:agent-west-1 DNS:localhost IP:127.0.0.1
umask 077
mkdir -p "$root/kafka" "$root/agent" "$root/collector" "$root/setup"
cat "$ca/imds-broker.key" "$ca/imds-broker.pem" "$ca/ca.pem" >"$root/kafka/imds-broker.keystore.pem"
cp "$root/kafka/imds-broker.keystore.pem" "$root/setup/imds-broker.keystore.pem"
for dir in kafka agent collector setup; do cp "$ca/ca.pem" "$root/$dir/ca.pem"; done
cp "$ca/imds-agent.pem" "$ca/imds-agent.key" "$ca/admin.pem" "$ca/admin.key" "$root/agent/"
openssl rand -hex 24 >"$root/setup/imds-agent.password"
openssl rand -hex 24 >"$root/setup/imds-collector.password"
cp "$root/setup/imds-collector.password" "$root/collector/imds-collector.password"
cat >"$root/setup/admin-client.properties" <<PROPS
security.protocol=SSL
ssl.keystore.type=PEM
ssl.keystore.location=/secrets/setup/imds-broker.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=/secrets/setup/ca.pem
PROPS
chmod 644 "$root"/*/ca.pem
chown -R 1000:1000 "$root/kafka" "$root/setup"
chown -R imds "$root/agent" "$root/collector"
chmod 755 "$root" "$root/kafka" "$root/agent" "$root/collector" "$root/setup"
rm -f "$ca/ca.key"
touch "$root/.complete"
