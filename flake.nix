{
  description = "flakefleet: a deploy orchestrator for NixOS fleets on EC2, driven by FlakeHub releases";

  # This file is checked here only by `nix-instantiate --parse` (no Nix store or
  # network on the build machines); `nix flake check` needs the inputs.
  inputs = {
    nixpkgs.url = "https://flakehub.com/f/NixOS/nixpkgs/0.2405.*.tar.gz";
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

      # What a fleet host needs so flakefleet can apply releases to it.
      nixosModules.fleet-host = { config, pkgs, ... }:
        let
          fhPackage = fh.packages.${pkgs.stdenv.hostPlatform.system}.default;
        in
        {
          imports = [ determinate.nixosModules.default ];
          services.amazon-ssm-agent.enable = true;
          systemd.services.amazon-ssm-agent = {
            # The apply document runs fh, readlink and systemctl as the agent.
            path = [ fhPackage pkgs.coreutils pkgs.bash config.systemd.package ];
            # A release must not restart the agent in the middle of the command applying it.
            restartIfChanged = false;
          };
          environment.systemPackages = [ fhPackage ];
        };

      nixosConfigurations.fleet-example = nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          "${nixpkgs}/nixos/modules/virtualisation/amazon-image.nix"
          self.nixosModules.fleet-host
          { system.stateVersion = "24.05"; }
        ];
      };
    };
}
