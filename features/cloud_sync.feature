Feature: Cloud protocol
  The supervisor speaks the cloud protocol with the gateway's credentials:
  it polls the target state (with ETag), provisions, patches and looks up
  devices, and streams logs.

  Background:
    Given the supervisor is running

  @CLOUD-STATE @contract
  Scenario: The target state is polled with the gateway's key and revalidated with its ETag
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And the supervisor has downloaded release "R1" of "A"
    When the supervisor has fetched its target twice more
    Then the supervisor revalidated the target state with If-None-Match and got 304
    And the cloud sees a state poll in every window of 2 poll intervals
    And every request to the cloud carried the gateway's key
    And the cloud saw no request it did not understand

  @CLOUD-STATE @contract
  Scenario: A change in the cloud reaches the supervisor within a few poll intervals
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    When device "D" has environment variable "COLOUR" set to "green"
    Then the supervisor eventually shows device "D" with:
      | field             | value                |
      | targetEnvironment | {"COLOUR": "green"}  |

  @CLOUD-STATE @contract
  Scenario: Failed state polls are retried and keep the last known target
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    And the supervisor has downloaded release "R1" of "A"
    When the cloud fails the next 3 state requests with 500
    And the supervisor has fetched its target twice more
    Then the supervisor shows device "D" with:
      | field        | value         |
      | targetCommit | "{commit R1}" |
    And the dependent apps list is exactly:
      | app | release | config |
      | A   | R1      | {}     |

  @CLOUD-PROV @CLOUD-PATCH @CLOUD-LOGS @contract
  Scenario: Provisioning, updates and logs go to the cloud with the gateway's key
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    When the gateway app reports for "D":
      """
      {"status": "Idle", "is_online": true}
      """
    And the gateway app sends the log line "hello cloud" for "D" without a timestamp
    # checks: CLOUD-PATCH
    Then the cloud eventually has device "D" with:
      | field     | value  |
      | status    | "Idle" |
      | is_online | true   |
    # checks: CLOUD-LOGS
    And the cloud eventually received the log line "hello cloud" for "D"
    And every log stream request the cloud received is newline-delimited JSON of uuid, message, timestamp and isSystem of this gateway's devices
    # checks: CLOUD-PATCH
    And every PATCH the cloud received carries only status, is_online and is_on__commit, of their types
    # checks: CLOUD-PROV
    And every provisioning request the cloud received carries belongs_to__application, device_type, is_managed_by__device, uuid and registered_at
    # checks: all
    And every request to the cloud carried the gateway's key
    And the cloud saw no request it did not understand

  @CLOUD-GET @contract
  Scenario: A device in the target that the supervisor did not provision is looked up in the cloud
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "E" of "A" created in the cloud for this gateway
    Then the supervisor eventually shows device "E" with:
      | field    | value          |
      | deviceId | "{cloud id E}" |
    And the supervisor looked up device "E" in the cloud by uuid
