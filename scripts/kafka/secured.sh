# shellcheck shell=bash
# The secured mode of scripts/kafka/start.sh (--secured). Sourced, not executed.
#
# One broker whose client listener is SASL_SSL: TLS with a certificate signed by
# a CA made at start (openssl), client certificates requested (and verified when
# sent), SCRAM-SHA-512 and PLAIN users, and the StandardAuthorizer with
# allow.everyone.if.no.acl.found=false: a user reaches only what ACLs grant.
# A local test broker: the passwords are known (<name>-secret), the controller
# listener is plaintext on 127.0.0.1 and its ANONYMOUS principal a super user
# (the broker's own controller requests), like the admin user.
#
# In the cluster folder, for clients and tests:
#   tls/ca.pem                  the CA that signed the broker's certificate
#   tls/client.pem, client.key  a client certificate signed by that CA
#   tls/other-ca.pem            a CA that signed nothing here (an untrusted one)
#   admin.properties            Kafka CLI settings of the admin user
#   users                       "name password" per line, admin first
#
# Users: admin, and $EDDY_KAFKA_USERS (space-separated names; default the ones
# the tests use), each with password <name>-secret.

# shellcheck disable=SC2034  # read by start.sh
KAFKA_SECURED_USERS="admin ${EDDY_KAFKA_USERS:-alice bob payment inventory orders}"

secured_password() { echo "$1-secret"; }

# Makes the CA, the broker's keystore and a client certificate in $1/tls.
secured_tls() {
  local tls="$1/tls" pw
  command -v openssl >/dev/null || kdie "openssl not found (the secured broker makes its certificates with it)"
  mkdir -p "$tls"
  pw="$(head -c12 /dev/urandom | base64 | tr -d '/+=\n')"
  (
    cd "$tls"
    make_ca() { # $1 = file stem, $2 = name
      openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" -days 30 \
        -subj "/CN=$2" 2>/dev/null
    }
    sign() { # $1 = file stem, $2 = subject, $3 = extensions
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
        -days 30 -extfile <(printf '%s\n' "$3") 2>/dev/null
      rm -f "$1.csr"
    }
    make_ca ca "eddy test CA"
    make_ca other-ca "eddy untrusted CA"
    sign broker "/CN=localhost" "subjectAltName=IP:127.0.0.1,DNS:localhost"
    sign client "/CN=eddy-client" "extendedKeyUsage=clientAuth"
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -out broker.p12 -passout "pass:$pw"
    printf '%s' "$pw" >keystore.password
    chmod 600 ./*.key keystore.password
  ) || kdie "making the secured broker's certificates failed"
}

# The broker's listener and security settings (server.properties lines).
# $1 = cluster folder, $2 = broker port, $3 = controller port
secured_properties() {
  local tls="$1/tls" admin_pw plain_users="" name
  admin_pw="$(secured_password admin)"
  for name in $KAFKA_SECURED_USERS; do
    plain_users+=" user_$name=\"$(secured_password "$name")\""
  done
  cat <<PROPS
listeners=SASL_SSL://$KAFKA_HOST:$2,CONTROLLER://$KAFKA_HOST:$3
advertised.listeners=SASL_SSL://$KAFKA_HOST:$2,CONTROLLER://$KAFKA_HOST:$3
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin_pw"$plain_users;
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$(cat "$tls/keystore.password")
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
listener.name.sasl_ssl.ssl.client.auth=requested
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:ANONYMOUS
PROPS
}

# StorageTool format arguments that create the SCRAM users.
secured_format_args() {
  local name
  for name in $KAFKA_SECURED_USERS; do
    printf '%s\n' --add-scram "SCRAM-SHA-512=[name=$name,password=$(secured_password "$name")]"
  done
}

# Writes admin.properties and users in the cluster folder $1.
secured_client_files() {
  local name
  cat >"$1/admin.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secured_password admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$1/tls/ca.pem
PROPS
  for name in $KAFKA_SECURED_USERS; do echo "$name $(secured_password "$name")"; done >"$1/users"
}
