{
  description = "flakefleet: a deploy orchestrator for NixOS fleets on EC2, driven by FlakeHub releases";

  # This file is checked here only by `nix-instantiate --parse` (no Nix store or
  # network on the build machines); `nix flake check` needs the inputs.
  inputs = {
    nixpkgs.url = "https://flakehub.com/f/NixOS/nixpkgs/0.2605.*.tar.gz";
    determinate.url = "https://flakehub.com/f/DeterminateSystems/determinate/*";
    fh.url = "https://flakehub.com/f/DeterminateSystems/fh/*";
  };

  outputs = { self, nixpkgs, determinate, fh, ... }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # The Lambda's `bootstrap`, statically linked (musl) so it runs on
      # provided.al2023 without the Nix store.
      packages = forAllSystems (pkgs: {
        default = pkgs.pkgsStatic.rustPlatform.buildRustPackage {
          pname = "flakefleet";
          version = "0.1.0";
          src = self;
          cargoLock.lockFile = ./Cargo.lock;
          # The tests need the local AWS emulators: run them with `make test`.
          doCheck = false;
          postInstall = ''
            mkdir -p $out/lambda
            cp $out/bin/flakefleet-lambda $out/lambda/bootstrap
          '';
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [ cargo rustc clippy rustfmt cargo-lambda awscli2 cfn-lint python3 ];
        };
      });

      # What a fleet host needs so flakefleet can apply releases to it (the
      # SSM agent with fh, logged in to FlakeHub), and the health checks a
      # release declares (docs/health-checks.md). Import it from another
      # flake: inputs.flakefleet.url = "github:OWNER/flakefleet"; then
      # modules = [ flakefleet.nixosModules.fleet-host ].
      nixosModules.fleet-host = { config, lib, pkgs, ... }:
        let
          fhPackage = fh.packages.${pkgs.stdenv.hostPlatform.system}.default;
          cfg = config.flakefleet;
          # Each check becomes an executable in the system's closure: healthy
          # when it exits 0; its last line of output is its answer.
          checkScript = name: check:
            if check.url != null then
              pkgs.writeShellScript "flakefleet-check-${name}" ''
                status=$(${pkgs.curl}/bin/curl -sS -o /dev/null -w '%{http_code}' \
                  --max-time ${toString cfg.healthCheckSettings.timeoutSeconds} ${lib.escapeShellArg check.url}) || true
                echo "HTTP $status from ${check.url}"
                [ "$status" = ${toString check.expectStatus} ]
              ''
            else
              pkgs.writeShellScript "flakefleet-check-${name}" check.command;
        in
        {
          imports = [ determinate.nixosModules.default ];

          options.flakefleet = {
            healthChecks = lib.mkOption {
              default = { };
              description = "Checks the apply document runs after activating this system; a failing one switches the host back.";
              type = lib.types.attrsOf (lib.types.submodule {
                options = {
                  url = lib.mkOption {
                    type = lib.types.nullOr lib.types.str;
                    default = null;
                    example = "http://127.0.0.1:8080/health";
                    description = "GET this URL; healthy when it answers expectStatus.";
                  };
                  expectStatus = lib.mkOption {
                    type = lib.types.ints.between 100 599;
                    default = 200;
                  };
                  command = lib.mkOption {
                    type = lib.types.nullOr lib.types.lines;
                    default = null;
                    example = "systemctl is-active --quiet postgresql";
                    description = "A bash script; healthy when it exits 0.";
                  };
                };
              });
            };
            healthCheckSettings = {
              attempts = lib.mkOption { type = lib.types.ints.between 1 99; default = 5; };
              intervalSeconds = lib.mkOption { type = lib.types.ints.between 0 999; default = 3; };
              timeoutSeconds = lib.mkOption { type = lib.types.ints.between 1 999; default = 10; };
            };
          };

          config = {
            assertions = lib.mapAttrsToList (name: check: {
              assertion = builtins.match "[A-Za-z0-9_.-]{1,64}" name != null
                && (check.url == null) != (check.command == null);
              message = "flakefleet.healthChecks.${name}: the name is letters, digits, _ . - (at most 64), and it has exactly one of url or command";
            }) cfg.healthChecks;

            # fh fetches closures from FlakeHub's cache as this host's
            # instance role: the host logs in before the agent, or the boot's
            # user data, may apply anything. FlakeHub must know the role's
            # ARN (README: the quick start). Retried until it works, since the
            # instance role's credentials may lag the network by seconds.
            systemd.services.flakefleet-login = {
              description = "Log this host in to FlakeHub with its instance role";
              wantedBy = [ "multi-user.target" ];
              wants = [ "network-online.target" ];
              after = [ "network-online.target" "nix-daemon.service" "determinate-nixd.service" ];
              before = [ "amazon-ssm-agent.service" "amazon-init.service" ];
              path = [ "/run/current-system/sw" ];
              script = "determinate-nixd login aws";
              serviceConfig = {
                Type = "oneshot";
                RemainAfterExit = true;
                Restart = "on-failure";
                RestartSec = 10;
              };
              unitConfig.StartLimitIntervalSec = 0;
            };
            systemd.services.amazon-init = {
              wants = [ "flakefleet-login.service" ];
              after = [ "flakefleet-login.service" ];
            };

            services.amazon-ssm-agent.enable = true;
            systemd.services.amazon-ssm-agent = {
              # The apply document runs fh, readlink and systemctl as the agent.
              path = [ fhPackage pkgs.coreutils pkgs.bash config.systemd.package ];
              # A release must not restart the agent in the middle of the command applying it.
              restartIfChanged = false;
              # No command before the host is logged in to FlakeHub.
              wants = [ "flakefleet-login.service" ];
              after = [ "flakefleet-login.service" ];
            };
            environment.systemPackages = [ fhPackage ];

            # The contract with the apply document: SYSTEM/etc/flakefleet/.
            environment.etc = lib.mkIf (cfg.healthChecks != { }) (
              lib.mapAttrs' (name: check: lib.nameValuePair "flakefleet/health-checks/${name}" {
                source = checkScript name check;
              }) cfg.healthChecks
              // {
                "flakefleet/health.conf".text = ''
                  attempts=${toString cfg.healthCheckSettings.attempts}
                  interval_seconds=${toString cfg.healthCheckSettings.intervalSeconds}
                  timeout_seconds=${toString cfg.healthCheckSettings.timeoutSeconds}
                '';
              }
            );
          };
        };

      nixosConfigurations.fleet-example = nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          "${nixpkgs}/nixos/modules/virtualisation/amazon-image.nix"
          self.nixosModules.fleet-host
          {
            system.stateVersion = "26.05";
            flakefleet.healthChecks.ssh.command = "systemctl is-active --quiet sshd";
          }
        ];
      };
    };
}
