Feature: Faults of the cloud, the registry and the gateway app
  The supervisor keeps serving its API when the cloud or the registry fails,
  answers 503 (never 500) when it cannot do what is asked, and recovers when
  the fault heals.

  Background:
    Given the gateway app fetches the assets of every update hook it receives
    And the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    And the supervisor has downloaded release "R1" of "A"

  @ERR-1 @DEV-LIST-1 @APP-LIST-1 @contract
  Scenario: Reads are served while the cloud is unreachable
    Given the cloud is unreachable
    When the supervisor has waited 3 poll intervals
    # checks: DEV-LIST-1
    Then the device list holds exactly "D"
    # checks: APP-LIST-1
    And the dependent apps list is exactly:
      | app | release | config |
      | A   | R1      | {}     |
    # checks: ERR-1
    And the assets of "A" at release "R1" are exactly:
      | path         | content |
      | firmware.bin | v1      |

  @ERR-1 @contract
  Scenario: Reads are served while the cloud answers 500
    Given the cloud answers every request with 500
    When the supervisor has waited 3 poll intervals
    Then the device list holds exactly "D"
    And GET "/v1/devices/{uuid D}" answers 200

  @ERR-1 @DEV-LOG-1 @contract
  Scenario: Logs are accepted while the cloud is unreachable
    Given the cloud is unreachable
    When the gateway app calls POST "/v1/devices/{uuid D}/logs" with body:
      """
      {"message": "offline"}
      """
    # checks: DEV-LOG-1
    Then the answer is 202

  @ERR-1 @HOOK-UPD-2 @contract
  Scenario: A registry that fails mid-download delays the release, then it arrives whole
    Given the registry fails the next 3 blob requests with 500
    When a release "R2" of "A" holding files is pushed:
      | path         | content       |
      | firmware.bin | random 100000 |
    # checks: ERR-1
    Then the supervisor eventually lists release "R2" of "A"
    And the assets of "A" at release "R2" are exactly:
      | path         | content       |
      | firmware.bin | random 100000 |
    # checks: HOOK-UPD-2
    And "D" eventually receives an update hook for release "R2"
    And every update hook could fetch its assets at once

  @ERR-1 @contract
  Scenario: A cloud that comes back is used again
    Given the cloud is unreachable
    And the supervisor has waited 3 poll intervals
    When the cloud is reachable again
    And device "D" has environment variable "AFTER" set to "outage"
    Then the supervisor eventually shows device "D" with:
      | field             | value               |
      | targetEnvironment | {"AFTER": "outage"} |

  # A supervisor may queue the update (200) or refuse it as unavailable
  # (503); it never answers 500.
  @ERR-1 @DEV-PUT-1 @contract
  Scenario Outline: An update while the cloud fails is 200 or 503, never 500
    Given <fault>
    When the gateway app calls PUT "/v1/devices/{uuid D}" with body:
      """
      {"status": "Idle", "is_online": true}
      """
    # checks: ERR-1
    Then the answer is 200 or 503

    Examples:
      | fault                                |
      | the cloud answers every request with 500 |
      | the cloud is unreachable             |
