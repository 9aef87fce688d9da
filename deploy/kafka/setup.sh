#!/bin/sh
# docker-compose.yml's kafka-setup service (apache/kafka image): once the broker answers on its
# mutual-TLS listener, logged in as the broker's own principal: the SCRAM users, the ACLs
# (imds-agent writes imds.logs*, imds-collector reads it with groups imds-collector*) and the
# topic. Every step is idempotent. scripts/kafka does the same for the native broker.
set -eu
bin=/opt/kafka/bin
admin="--bootstrap-server kafka:9095 --command-config /secrets/setup/admin-client.properties"
for user in imds-agent imds-collector; do
    $bin/kafka-configs.sh $admin --alter --entity-type users --entity-name "$user" \
        --add-config "SCRAM-SHA-512=[password=$(cat "/secrets/setup/$user.password")]"
done
$bin/kafka-acls.sh $admin --add --allow-principal User:imds-agent --operation Write \
    --operation Describe --topic imds.logs --resource-pattern-type prefixed
$bin/kafka-acls.sh $admin --add --allow-principal User:imds-collector --operation Read \
    --operation Describe --topic imds.logs --group imds-collector --resource-pattern-type prefixed
$bin/kafka-topics.sh $admin --create --if-not-exists --topic imds.logs --partitions 4 \
    --replication-factor 1
