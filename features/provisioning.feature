Feature: Provisioning dependent devices
  POST /v1/devices registers a new dependent device in the cloud, managed by
  this gateway, and the supervisor lists it from then on.

  Background:
    Given the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |

  @DEV-PROV-1 @CLOUD-PROV @contract
  Scenario: Provisioning without a device type gives generic-amd64
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": {app A}}
      """
    # checks: DEV-PROV-1
    Then the answer is 201
    And the answer is a provisioned device "D" of type "generic-amd64"
    # checks: CLOUD-PROV
    And the cloud has device "D" in app "A", managed by this gateway, of type "generic-amd64"
    And every provisioning request the cloud received carries belongs_to__application, device_type, is_managed_by__device, uuid and registered_at
    # checks: DEV-PROV-1
    And the supervisor shows device "D" with:
      | field       | value           |
      | appId       | {app A}         |
      | device_type | "generic-amd64" |
      | deviceId    | "{cloud id D}"  |

  @DEV-PROV-1 @CLOUD-PROV @contract
  Scenario: Provisioning with a device type
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": {app A}, "device_type": "edge"}
      """
    # checks: DEV-PROV-1
    Then the answer is 201
    And the answer is a provisioned device "D" of type "edge"
    # checks: CLOUD-PROV
    And the cloud has device "D" in app "A", managed by this gateway, of type "edge"

  @DEV-PROV-1 @contract
  Scenario: Two provisioned devices get distinct uuids and both are listed
    Given a device "D1" of "A" provisioned through the supervisor
    And a device "D2" of "A" provisioned through the supervisor
    Then devices "D1" and "D2" have different uuids
    And the device list holds exactly "D1" and "D2"

  @DEV-PROV-2 @contract
  Scenario Outline: A missing or invalid appId is refused
    When the gateway app calls POST "/v1/devices" with body:
      """
      <body>
      """
    Then the answer is 400 "appId must be a positive integer"
    And the device list is empty

    Examples:
      | body                               |
      | {}                                 |
      | {"device_type": "edge"}            |
      | {"appId": null}                    |
      | {"appId": "{app A}"}               |
      | {"appId": 0}                       |
      | {"appId": -4}                      |
      | {"appId": 1.5}                     |
      | {"appId": true}                    |
      | {"appId": [1]}                     |

  @DEV-PROV-3 @CLOUD-PROV @contract
  Scenario: An app that is not a dependent app of this gateway is refused
    Given a dependent app "X" of another gateway
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": {app X}}
      """
    # checks: DEV-PROV-3
    Then the answer is 400 "Provisioning failed, invalid appId or credentials"
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": 987654321}
      """
    Then the answer is 400 "Provisioning failed, invalid appId or credentials"
    And the device list is empty

  @DEV-PROV-3 @ERR-1 @contract
  Scenario: Provisioning while the cloud is unreachable is a 503
    Given the cloud is unreachable
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": {app A}}
      """
    # checks: DEV-PROV-3
    Then the answer is 503

  @DEV-PROV-3 @ERR-1 @contract
  Scenario: Provisioning while the cloud fails is a 503, never a 500
    Given the cloud answers every request with 500
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": {app A}}
      """
    # checks: DEV-PROV-3
    Then the answer is 503

  @DEV-PROV-4 @reference
  Scenario: The provisioning answer repeats the name as device_name
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": {app A}}
      """
    Then the answer is 201
    And the answer's "device_name" equals its "name"
