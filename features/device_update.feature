Feature: Dependent device update
  PUT /v1/devices/:uuid records what the gateway app reports for a device;
  status, is_online and commit reach the cloud, environment and config stay
  local.

  Background:
    Given the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor

  @DEV-PUT-1 @contract
  Scenario: Every field can be updated and the answer is the updated device
    When the gateway app calls PUT "/v1/devices/{uuid D}" with body:
      """
      {"status": "Updating", "is_online": true, "commit": "{commit R1}",
       "environment": {"LED": "on"}, "config": {"RATE": "9600"}, "colour": "ignored"}
      """
    Then the answer is 200
    And the answer is the device object of "D" with:
      | field       | value            |
      | status      | "Updating"       |
      | is_online   | true             |
      | commit      | "{commit R1}"    |
      | environment | {"LED": "on"}    |
      | config      | {"RATE": "9600"} |
    And the supervisor shows device "D" with:
      | field       | value            |
      | status      | "Updating"       |
      | is_online   | true             |
      | commit      | "{commit R1}"    |
      | environment | {"LED": "on"}    |
      | config      | {"RATE": "9600"} |

  @DEV-PUT-1 @contract
  Scenario: A subset leaves the other fields as they were
    Given the gateway app reports for "D":
      """
      {"status": "Idle", "is_online": true}
      """
    When the gateway app calls PUT "/v1/devices/{uuid D}" with body:
      """
      {"is_online": false}
      """
    Then the answer is 200
    And the supervisor shows device "D" with:
      | field     | value  |
      | status    | "Idle" |
      | is_online | false  |

  @DEV-PUT-2 @contract
  Scenario Outline: A field of the wrong type is refused and nothing changes
    Given the gateway app reports for "D":
      """
      {"status": "Idle", "is_online": true, "environment": {"A": "1"}}
      """
    When the gateway app calls PUT "/v1/devices/{uuid D}" with body:
      """
      <body>
      """
    Then the answer is 400 "<message>"
    And the supervisor shows device "D" with:
      | field       | value      |
      | status      | "Idle"     |
      | is_online   | true       |
      | commit      | null       |
      | environment | {"A": "1"} |
      | config      | {}         |

    Examples:
      | body                                      | message                                       |
      | {"is_online": "yes"}                      | is_online must be a boolean                   |
      | {"is_online": 1}                          | is_online must be a boolean                   |
      | {"status": ""}                            | status must be a non-empty string             |
      | {"status": 5}                             | status must be a non-empty string             |
      | {"commit": ""}                            | commit must be a non-empty string             |
      | {"commit": 123}                           | commit must be a non-empty string             |
      | {"environment": "LED=on"}                 | environment must be an object                 |
      | {"config": 7}                             | config must be an object                      |
      | {"status": "Busy", "is_online": "yes"}    | is_online must be a boolean                   |
      | {}                                        | At least one device attribute must be updated |
      | {"colour": "red"}                         | At least one device attribute must be updated |

  @DEV-PUT-3 @contract
  Scenario: An unknown device is not found
    When the gateway app calls PUT "/v1/devices/0123456789abcdef0123456789abcdef" with body:
      """
      {"status": "Idle"}
      """
    Then the answer is 404

  @DEV-PUT-3 @HOOK-DEL-1 @contract
  Scenario: A device awaiting its delete acknowledgement is gone for PUT
    Given the supervisor has fetched its target twice more
    And the gateway app answers delete hooks for "D" with 500
    When device "D" is deleted in the cloud
    # checks: HOOK-DEL-1
    Then the supervisor eventually answers GET "/v1/devices/{uuid D}" with 410 "Device deleted"
    # checks: DEV-PUT-3
    When the gateway app calls PUT "/v1/devices/{uuid D}" with body:
      """
      {"status": "Idle"}
      """
    Then the answer is 410

  @DEV-PUT-4 @CLOUD-PATCH @contract
  Scenario: status, is_online and commit reach the cloud; environment and config do not
    When the gateway app reports for "D":
      """
      {"status": "Updating", "is_online": true, "commit": "{commit R1}", "environment": {"SECRET": "local"}, "config": {"C": "1"}}
      """
    # checks: DEV-PUT-4
    Then the cloud eventually has device "D" with:
      | field         | value         |
      | status        | "Updating"    |
      | is_online     | true          |
      | is_on__commit | "{commit R1}" |
    And the cloud's device "D" has no environment variable "SECRET"
    # checks: CLOUD-PATCH
    And the cloud saw no request it did not understand

  # Judged from the PATCH bodies as sent: every reported value arrives (a
  # false as much as a true), and no PATCH carries any other field.
  @DEV-PUT-4 @CLOUD-PATCH @contract
  Scenario: Every reported status, is_online and commit reaches the cloud in PATCHes of only those fields
    When the gateway app reports for "D":
      """
      {"status": "Updating", "is_online": true, "commit": "{commit R1}", "environment": {"SECRET": "local"}, "config": {"C": "1"}}
      """
    Then the cloud eventually received PATCHes of "D" carrying:
      | field         | value         |
      | status        | "Updating"    |
      | is_online     | true          |
      | is_on__commit | "{commit R1}" |
    When the gateway app reports for "D":
      """
      {"is_online": false}
      """
    Then the cloud eventually received PATCHes of "D" carrying:
      | field     | value |
      | is_online | false |
    When the gateway app reports for "D":
      """
      {"status": "Idle", "environment": {"X": "1"}}
      """
    And the gateway app reports for "D":
      """
      {"config": {"RATE": "9600"}}
      """
    Then the cloud eventually has device "D" with:
      | field         | value         |
      | status        | "Idle"        |
      | is_online     | false         |
      | is_on__commit | "{commit R1}" |
    And every PATCH the cloud received carries only status, is_online and is_on__commit, of their types
    And the cloud saw no request it did not understand

  @DEV-PUT-5 @reference
  Scenario Outline: Validation happens before the lookup, arrays are not objects, null is not a boolean
    When the gateway app calls PUT "/v1/devices/<device>" with body:
      """
      <body>
      """
    Then the answer is 400 "<message>"

    Examples:
      | device                           | body                   | message                           |
      | 0123456789abcdef0123456789abcdef | {"is_online": "yes"}   | is_online must be a boolean       |
      | 0123456789abcdef0123456789abcdef | {}                     | At least one device attribute must be updated |
      | {uuid D}                         | {"environment": []}    | environment must be an object     |
      | {uuid D}                         | {"config": ["a"]}      | config must be an object          |
      | {uuid D}                         | {"environment": null}  | environment must be an object     |
      | {uuid D}                         | {"is_online": null}    | is_online must be a boolean       |

  @DEV-PUT-6 @reference
  Scenario: Updates made while the cloud is unreachable are accepted and delivered in order later
    Given the cloud is unreachable
    When the gateway app reports for "D":
      """
      {"status": "Downloading", "is_online": true}
      """
    And the gateway app reports for "D":
      """
      {"status": "Installing"}
      """
    And the gateway app reports for "D":
      """
      {"status": "Idle", "commit": "{commit R1}"}
      """
    And the supervisor has tried to send status "Idle" of "D" to the unreachable cloud
    And the cloud is reachable again
    # Kept for 10 retry intervals: an older update delivered after the
    # newest, even a few seconds late, would undo it.
    Then the cloud eventually has device "D", and keeps for 10 retry intervals, with:
      | field         | value         |
      | status        | "Idle"        |
      | is_online     | true          |
      | is_on__commit | "{commit R1}" |
