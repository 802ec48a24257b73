Feature: Dependent device information
  GET /v1/devices and GET /v1/devices/:uuid give the device object of every
  dependent device this gateway manages.

  Background:
    Given the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And the supervisor has downloaded release "R1" of "A"

  @DEV-LIST-1 @contract
  Scenario: No devices gives an empty list
    Then the device list is empty

  # A fresh device's is_online, status, name, download_progress and
  # logs_channel are open within their types (the contract's Latitude): a
  # supervisor may take is_online from the cloud's provisioning answer.
  @DEV-LIST-1 @DEV-GET-1 @contract
  Scenario: The device object has the contract's fields and types
    Given a device "D" of "A" provisioned through the supervisor
    # checks: DEV-GET-1
    Then the device object of "D" has the contract's fields and types
    And the supervisor shows device "D" with:
      | field             | value           |
      | uuid              | "{uuid D}"      |
      | appId             | {app A}         |
      | deviceId          | "{cloud id D}"  |
      | environment       | {}              |
      | config            | {}              |
    # checks: DEV-LIST-1
    And every device in the device list has the contract's fields and types

  # Every device answer of every scenario is checked against the contract's
  # device object; here the list holds a device that has reported its state
  # beside one that has not.
  @DEV-LIST-1 @DEV-PUT-1 @contract
  Scenario: Listed devices are whole device objects after reports too
    Given a device "D" of "A" provisioned through the supervisor
    And a device "E" of "A" provisioned through the supervisor
    # checks: DEV-PUT-1
    When the gateway app reports for "D":
      """
      {"status": "Idle", "is_online": true, "commit": "{commit R1}", "environment": {"LED": "on"}, "config": {"RATE": "9600"}}
      """
    And the gateway app reports for "E":
      """
      {"is_online": false}
      """
    # checks: DEV-LIST-1
    Then the device list holds exactly "D" and "E"
    # checks: DEV-PUT-1
    And the supervisor shows device "D" with:
      | field       | value            |
      | is_online   | true             |
      | commit      | "{commit R1}"    |
      | environment | {"LED": "on"}    |
      | config      | {"RATE": "9600"} |

  @DEV-GET-1 @contract
  Scenario: The target commit is the app's downloaded commit and the target variables are the cloud's
    Given app "A" has environment variable "MODE" set to "fast"
    And app "A" has config variable "RESIN_SUPERVISOR_DELTA" set to "1"
    And a device "D" of "A" provisioned through the supervisor
    And device "D" has environment variable "MODE" set to "slow"
    And device "D" has environment variable "LED" set to "on"
    Then the supervisor eventually shows device "D" with:
      | field             | value                           |
      | targetCommit      | "{commit R1}"                   |
      | targetEnvironment | {"MODE": "slow", "LED": "on"}   |
      | targetConfig      | {"RESIN_SUPERVISOR_DELTA": "1"} |

  @DEV-GET-1 @contract
  Scenario: An unknown device is not found
    When the gateway app calls GET "/v1/devices/0123456789abcdef0123456789abcdef"
    Then the answer is 404 "Device not found"

  @DEV-GET-1 @DEV-LIST-1 @HOOK-DEL-1 @contract
  Scenario: A device awaiting its delete acknowledgement is gone for GET but still listed
    Given a device "D" of "A" provisioned through the supervisor
    And the supervisor has fetched its target twice more
    And the gateway app answers delete hooks for "D" with 500
    When device "D" is deleted in the cloud
    # checks: DEV-GET-1
    Then the supervisor eventually answers GET "/v1/devices/{uuid D}" with 410 "Device deleted"
    # checks: DEV-LIST-1
    And the device list holds exactly "D"

  @DEV-LIST-1 @CLOUD-GET @contract
  Scenario: A device provisioned elsewhere for this gateway is listed with its cloud id
    Given a device "E" of "A" created in the cloud for this gateway
    Then the supervisor eventually shows device "E" with:
      | field        | value          |
      | uuid         | "{uuid E}"     |
      | appId        | {app A}        |
      | deviceId     | "{cloud id E}" |
      | targetCommit | "{commit R1}"  |
