Feature: Dependent applications list
  GET /v1/dependent-apps lists every dependent app whose current release has
  been downloaded, with its commit and configuration.

  Background:
    Given the supervisor is running

  @APP-LIST-1 @contract
  Scenario: No dependent apps gives an empty list
    When the gateway app calls GET "/v1/dependent-apps"
    Then the answer is 200 with JSON:
      """
      []
      """

  @APP-LIST-1 @contract
  Scenario: Downloaded apps are listed with id, name, commit and config
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | a-1     |
    And a dependent app "B" with a release "R2" holding files:
      | path         | content |
      | firmware.bin | b-1     |
    And app "B" has config variable "RESIN_SUPERVISOR_DELTA" set to "1"
    When the supervisor has downloaded release "R1" of "A"
    And the supervisor has downloaded release "R2" of "B"
    # The config was set after the push: a poll between the two may have
    # brought the release without it. Two more polls bring the latest.
    And the supervisor has fetched its target twice more
    Then the dependent apps list is exactly:
      | app | release | config                           |
      | A   | R1      | {}                               |
      | B   | R2      | {"RESIN_SUPERVISOR_DELTA": "1"}  |

  @APP-LIST-1 @contract
  Scenario: An app without a release is not listed
    Given a dependent app "A" without a release
    And a dependent app "B" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | b-1     |
    When the supervisor has downloaded release "R1" of "B"
    And the supervisor has fetched its target twice more
    Then the dependent apps list is exactly:
      | app | release | config |
      | B   | R1      | {}     |

  @APP-LIST-1 @contract
  Scenario: While a new release downloads, the app shows its previous commit
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And the supervisor has downloaded release "R1" of "A"
    And the registry is unreachable
    When a release "R2" of "A" holding files is pushed:
      | path         | content |
      | firmware.bin | v2      |
    And the supervisor has fetched its target twice more
    Then the dependent apps list is exactly:
      | app | release | config |
      | A   | R1      | {}     |
    When the registry is reachable again
    Then the supervisor eventually lists release "R2" of "A"

  @APP-LIST-1 @contract
  Scenario: An app whose first release is still downloading is absent
    Given the registry is unreachable
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    When the supervisor has fetched its target twice more
    Then the dependent apps list is exactly:
      | app | release | config |
    When the registry is reachable again
    Then the supervisor eventually lists release "R1" of "A"
