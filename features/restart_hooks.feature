Feature: Restart hooks
  A restart requested in the cloud for a dependent device becomes one
  PUT <base><uuid>/restart per request. Requests are made once the
  supervisor has seen the device in its target (a supervisor need not replay
  requests older than its knowledge of the device).

  Background:
    Given the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    And the supervisor has fetched its target twice more

  @HOOK-RST-1 @HOOK-ADDR-1 @contract
  Scenario: One restart request gives one restart hook
    When a restart of "D" is requested in the cloud
    Then "D" eventually receives a restart hook
    And every hook went to the gateway app's address for its device
    And no further restart hook reaches "D" while the contract would have repeated it

  @HOOK-RST-1 @contract
  Scenario: Each request gives its own hook
    When a restart of "D" is requested in the cloud
    And "D" eventually receives a restart hook
    And a restart of "D" is requested in the cloud
    And a restart of "D" is requested in the cloud
    Then "D" eventually receives 3 restart hooks
    And no further restart hook reaches "D" while the contract would have repeated it

  @HOOK-RST-1 @contract
  Scenario: A restart hook that fails is retried until a 200
    Given the gateway app answers restart hooks for "D" with 500, refuse, then 200
    When a restart of "D" is requested in the cloud
    Then "D" eventually receives 3 restart hooks
    And no further restart hook reaches "D" while the contract would have repeated it
    And the hooks to "D" kept the contract's timing

  @HOOK-RST-1 @contract
  Scenario: Restart hooks go only to the device they were requested for
    Given a device "D2" of "A" provisioned through the supervisor
    And the supervisor has fetched its target twice more
    When a restart of "D2" is requested in the cloud
    Then "D2" eventually receives a restart hook
    And no further restart hook reaches "D" while the contract would have repeated it
